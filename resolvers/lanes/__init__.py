"""The two lanes of the pipeline (ADR 0002): their typed batch state and what they compute.

``resolvers.pipeline`` lists the stages of each lane in order; the modules here hold the
state a lane decodes from one store load, and turn it into effects (``resolvers.effects``).
"""
