"""Route groups of the API function, each a Powertools ``Router`` included by ``functions/handlers/api.py``."""
