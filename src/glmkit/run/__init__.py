"""Running it: deploy sequences, the Docker engine, clusters, the tool-call check, image
builds, the tiny model and the doctor.
"""
