"""Knative Serving deployment: one scale-to-zero Service per model per region.

- names.py: the names and labels the Knative objects of a model get.
- manifest.py: builds the `serving.knative.dev/v1` Service of a model for a region.
- validate.py: checks a manifest on three levels: the CRD schema, Knative's webhook (webhook/), edgeinfer's policies.
- webhook/: Knative Serving's admission webhook for a Service (SetDefaults, then Validate), ported from Go.
- flags.py: a cluster's Knative ConfigMaps (feature flags, defaults, autoscaler), read or Knative's defaults.
- deployer.py: server-side apply per region (one kubeconfig context each), wait for Ready, list, delete.
- traffic.py: a canary's traffic blocks (pin, step, rollback, promote) and the candidate's template (pure).
- rollout_backend.py: KnativeTraffic, which judges each traffic change with validate.py and sends it as a merge patch.
- deploy_cli.py, services_cli.py: `edgeinfer deploy` and `edgeinfer services list|describe|delete`.
- validate_cli.py: `edgeinfer validate FILE|DIR|-`, for any Knative Service manifests.
- entrypoint.py: the function image's entry point (model repository URI, providers, engine cache).
"""

# A folder at the top of the repository (the user's layout), but a subpackage of edgeinfer: under
# another name its modules would load twice, with two copies of their state.
if __name__ != "edgeinfer.knative":
    raise ImportError(f"import edgeinfer.knative, not {__name__}: knative/ is part of the edgeinfer package")

