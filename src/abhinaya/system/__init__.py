"""The whole system: a system recipe (several members on one corpus and their ensemble), the stage runner of
``abhinaya run``, and prediction with a system run folder."""
