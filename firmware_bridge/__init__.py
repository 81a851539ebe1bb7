"""Protocol loa/v1: topics, message models, the server-side MQTT bridge and the simulator.

Depends on no other project package (an import-linter contract checks it).
"""
