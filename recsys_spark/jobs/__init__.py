"""One module per job: read -> call pure library functions -> write -> log -> return a typed result.

`runner` holds what they share (registry, pipeline order, timing, MLflow metrics). A new job is a
module here returning a `results.StageResult` subclass, registered in `runner.JOBS`.
"""
