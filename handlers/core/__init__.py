"""The ground every capability stands on: the shape and loading of app.yaml, the platform-neutral command,
reply and unit of work, people and their identities, business calendars, and the words people type.
"""
