"""The built-in tool plugins of pbench_runner (installed as ``pbench_runner_tools``).

Each module here is registered through the ``pbench_runner.tools`` entry-point
group, exactly as a third-party tool plugin is.
"""
