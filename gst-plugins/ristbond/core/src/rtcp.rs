//! Compound RTCP of RIST Simple Profile: SR/RR/SDES (RFC 3550 §6.4), generic NACK (RFC 4585 §6.2.1), RIST range NACK (TR-06-1 §5.3.2).
