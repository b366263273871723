"""The warm-pool tuner: forecast, queueing model, planner, simulator, traces and policies."""

# A folder at the top of the repository (the user's layout), but a subpackage of edgeinfer: under
# another name its modules would load twice, with two copies of their state.
if __name__ != "edgeinfer.tuner":
    raise ImportError(f"import edgeinfer.tuner, not {__name__}: tuner/ is part of the edgeinfer package")

