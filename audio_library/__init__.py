"""Audio library: ingest pipeline, loudness, content-addressed storage, signed URLs, TTS.

The processing core (no database, no web) lives in:

- `audio_library.probe` - what is in a file (ffprobe, by content);
- `audio_library.pipeline` - `process_file`: decode, measure, normalise, encode;
- `audio_library.dsp` - streaming BS.1770-4 loudness, true peak, the limiter;
- `audio_library.storage` - `MediaStore`: content-addressed files, upload intake;
- `audio_library.signing` - HMAC-signed, expiring media URLs;
- `audio_library.compose` - join jingle + bulletin + outro;
- `audio_library.peaks` - waveform previews;
- `audio_library.tts` - text-to-speech engines and Vietnamese normalisation.

Submodules are imported explicitly; importing the package itself is cheap.
"""
