"""Release orchestration: the ``ordinal release`` commands and the promotion approval flow.

The library half is :mod:`ordinal.release`; this package adds what needs Prefect (the human
approval through ``pause_flow_run(wait_for_input=...)``) and the typer sub-app
:data:`pipelines.release.cli.release_app`.
"""
