//! RIST RTP packets (TR-06-1 §5.2): PT 33, 90 kHz clock, even SSRC for originals, `ssrc | 1` for retransmissions.
