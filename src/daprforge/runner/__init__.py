"""``daprforge run``: a local ``dapr run -f`` (Multi-App Run template, ``dapr.yaml``).

Modules, one job each: ``template`` (parse, validate, merge), ``plan`` (ports, environment,
sidecar flags), ``processes`` (spawn, process groups, log pumping, stop), ``output`` (Rich
prefixes, colours, tables, crash reports), ``run`` (orchestration).
"""

from daprforge.runner.run import RunOptions, run_apps

__all__ = ["RunOptions", "run_apps"]
