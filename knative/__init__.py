"""Knative Serving deployment: one scale-to-zero Service per model per region.

- names.py: the names and labels the Knative objects of a model get.
- manifest.py: builds the `serving.knative.dev/v1` Service of a model for a region.
- validate.py: checks a manifest against the CRD schema and the rules of Knative's webhook.
- flags.py: which fields need a Knative feature flag, and whether a cluster has it on.
- deployer.py: server-side apply per region (one kubeconfig context each), wait for Ready, list, delete.
- deploy_cli.py, services_cli.py: `edgeinfer deploy` and `edgeinfer services list|describe|delete`.
- entrypoint.py: the function image's entry point (model repository URI, providers, engine cache).
"""

# A folder at the top of the repository (the user's layout), but a subpackage of edgeinfer: under
# another name its modules would load twice, with two copies of their state.
if __name__ != "edgeinfer.knative":
    raise ImportError(f"import edgeinfer.knative, not {__name__}: knative/ is part of the edgeinfer package")

