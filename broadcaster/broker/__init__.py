"""Broker credentials: per-station MQTT accounts provisioned in Mosquitto.

The service administers Mosquitto through its dynamic-security plugin
(``$CONTROL/dynamic-security/v1``).  Start here:

- :mod:`.dynsec`: a small typed client for the plugin's JSON commands.
- :mod:`.provisioning`: roles and ACLs per station and for the server account,
  issuing/rotating/revoking station secrets, and :func:`.provisioning.sync`, which
  reconciles the broker with the registry.
- :mod:`.bootstrap`: the embedded default broker's ``mosquitto.conf`` and
  dynamic-security file (``broadcaster mqtt bootstrap``).
- :mod:`.router`: ``/api/v1/stations/{sid}/credentials``.
"""
