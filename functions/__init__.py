"""edgeinfer.functions."""

# A folder at the top of the repository (the user's layout), but a subpackage of edgeinfer: under
# another name its modules would load twice, with two copies of their state.
if __name__ != "edgeinfer.functions":
    raise ImportError(f"import edgeinfer.functions, not {__name__}: functions/ is part of the edgeinfer package")
