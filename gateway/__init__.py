"""edgeinfer.gateway."""

# A folder at the top of the repository (the user's layout), but a subpackage of edgeinfer: under
# another name its modules would load twice, with two copies of their state.
if __name__ != "edgeinfer.gateway":
    raise ImportError(f"import edgeinfer.gateway, not {__name__}: gateway/ is part of the edgeinfer package")
