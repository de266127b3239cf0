"""The process: worker sockets, the supervisor of worker processes, logging and MLflow's environment.

Nothing here sees a request or a model.
"""
