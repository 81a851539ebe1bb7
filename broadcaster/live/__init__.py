"""Live paging: an operator speaks from the dashboard's microphone, or relays a live
stream, to chosen areas through a real Icecast2 server (issue 13, item 4).

- `icecast`: our Icecast configuration and the server as a child process;
- `service`: the session's broadcast on and off air (database; flushes);
- `sessions`: the running session (ffmpeg to Icecast, on-air checks; commits);
- `router`: the microphone WebSocket and the relay API.
"""
