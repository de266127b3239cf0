"""How a model computes: one runtime per MLflow flavour, chosen when a model is loaded."""
