//! 16-bit RTP sequence numbers: wrapping comparison and extension to 64 bits (RFC 3550 §A.1).
