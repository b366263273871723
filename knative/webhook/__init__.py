"""Knative Serving's admission webhook for a `serving.knative.dev/v1` Service, ported to Python.

What the webhook does on create, in its order: SetDefaults, then Validate, at knative/serving commit 98e5ef90
(the commit of knative/crd/service-crd.yaml). Each module ports one Go file of that commit and names it; the
test tables in tests/knative/webhook/ are Knative's own, case by case.

- field_error.py: knative.dev/pkg/apis.FieldError (the errors and their text, byte for byte).
- go.py, strconv.py: Go's formatting of values and time.Duration, and strconv's parsing, which messages embed.
- config.py: the config-features, config-defaults and config-autoscaler ConfigMaps.
- context.py: what Go carries in context.Context (the configs, create or update, the parent, the container kind).
- fieldmask.py, values.py: apis.CheckDisallowedFields over a manifest's maps; its values as Go's decoder reads them.
- k8s_names.py, quantity.py, image_reference.py: Kubernetes' name checks, resource.Quantity, and
  go-containerregistry's image reference parsing.
- kmp.py, go_types.py: knative.dev/pkg/kmp's diff text, with the Go field names and order it prints.
- keys.py: the annotation and label keys of pkg/apis/serving and pkg/apis/autoscaling.
- metadata.py, autoscaling.py: metadata_validation.go and annotation_validation.go.
- k8s_pod.py, k8s_container.py: k8s_validation.go and fieldmask.go, the pod and its containers.
- revision.py, configuration.py, route.py, service.py: pkg/apis/serving/v1, Validate and SetDefaults of each.
"""
