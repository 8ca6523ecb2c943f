"""The plan: recipe knowledge + host facts + settings → a ServePlan or ClusterPlan, and
`invoke plan`'s fit advice.
"""
