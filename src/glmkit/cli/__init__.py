"""What the tasks print and their help text.
"""
