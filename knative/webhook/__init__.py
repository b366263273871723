"""Knative Serving's admission webhook for a `serving.knative.dev/v1` Service, ported to Python.

What the webhook does on create, in its order: SetDefaults, then Validate, at knative/serving commit 98e5ef90
(the commit of knative/crd/service-crd.yaml). Each module ports one Go file of that commit and names it; the
test tables in tests/knative/webhook/ are Knative's own, case by case.

- field_error.py: knative.dev/pkg/apis.FieldError (the errors and their text, byte for byte).
- go.py: Go's formatting of values and time.Duration, which the messages embed.
- config.py: the config-features, config-defaults and config-autoscaler ConfigMaps.
- context.py: what Go carries in context.Context (the configs, create or update, the parent, the container kind).
- fieldmask.py: apis.CheckDisallowedFields over a manifest's maps.
"""
