//! Integration tests, one binary. They measure faults between two network namespaces joined
//! by a veth pair, so they need root and `ip netns`; without them they print why and pass
//! (under `CI=true` they fail instead).

// Namespaces, veth, UDP echo, probes, throughput, cleanup guards.
mod util;
// Each fault measured, then healed and checked gone.
mod faults;
// The man in the middle against a sealed and a plain server.
mod mitm;
