"""The local stack: every process of `edgeinfer up` and `edgeinfer drill` on this machine, under one supervisor.

- supervisor.py: spawns each child (dying with its parent), waits for a real readiness probe, restarts, stops
  in order;
- local.py: the stack of a topology (Redis, a gateway with its local pool per region, Envoy in front);
- state.py: where each region listens, and the state file `edgeinfer status` reads;
- procfs.py, envoy.py, observe.py: process trees, the Envoy child's admin interface, the admin port's figures;
- up_cli.py, status_cli.py, drill_cli.py: the commands, thin over the above.
"""
