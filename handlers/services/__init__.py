"""The services as people see them: their status and subscriptions, and the continual service improvement register."""
