//! The SOMA simulator.
