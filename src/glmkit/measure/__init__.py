"""Measuring: workloads, one benchmark point, `invoke bench`'s sweep, results, reports,
server metrics, GPU telemetry and `invoke tune`.
"""
