"""The warm-pool tuner: forecast, queueing model, planner, simulator, traces and policies."""
