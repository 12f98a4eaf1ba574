//! Faults and races: injected faults on the stores and on the requests the collector builds,
//! and writers racing `--execute` on every store that has a writer race.

mod faults;
mod request_faults;
mod writer_race;
mod writer_race_remote;
