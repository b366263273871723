"""Where a gateway sends a model's cache misses: `static` (fixed endpoints); `local` and `knative` come later."""

from edgeinfer.gateway.backends.base import Backend, BackendError, FunctionEndpoint

__all__ = ["Backend", "BackendError", "FunctionEndpoint"]
