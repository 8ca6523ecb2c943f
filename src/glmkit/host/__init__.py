"""This host: hardware, vendor profiles, settings, Hugging Face access and secrets.
"""
