//! Progress of a run (spec 8.5): bars per stage on a terminal, otherwise a structured
//! `progress` event every `--progress-interval`. Both read the live counters of
//! [`Progress`]; the stage orchestrator only sets the current [`Stage`].

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{HumanCount, MultiProgress, ProgressBar, ProgressState, ProgressStyle};
use schemars::JsonSchema;
use serde::Serialize;

use crate::manifest_fetch::IngestStats;

/// The tracing target of the `progress` events.
pub const EVENT_TARGET: &str = "gc_partition::progress";
/// The message of the `progress` events.
pub(crate) const EVENT_MESSAGE: &str = "progress";
/// The version of the `progress` event's JSON line. The line has no version field (spec 8.5
/// names none): this is the version of its schema file,
/// `schemas/progress-event.v<N>.schema.json`, raised when a field is renamed, removed or
/// changes type.
pub(crate) const EVENT_SCHEMA_VERSION: u32 = 1;

/// Live progress counters, written by the stages and read by the display and the events.
#[derive(Debug, Default)]
pub struct Progress {
    pub listed: Arc<AtomicU64>,
    pub planned: Arc<AtomicU64>,
    pub deleted: Arc<AtomicU64>,
    pub ingest: Arc<IngestStats>,
    pub stage: StageCell,
    pub verify_listed: Arc<AtomicU64>,
}

/// The stage a run is in, in the order a run goes through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Stage {
    LiveSet = 0,
    Manifests = 1,
    /// Listing and deciding: they stream together.
    Listing = 2,
    /// The exact check before the deletes and the plan file.
    Plan = 3,
    Execute = 4,
    /// Verify's listing after the deletes.
    Verify = 5,
    Done = 6,
}

impl Stage {
    const ALL: [Stage; 7] =
        [Stage::LiveSet, Stage::Manifests, Stage::Listing, Stage::Plan, Stage::Execute, Stage::Verify, Stage::Done];

    pub fn name(self) -> &'static str {
        match self {
            Stage::LiveSet => "live_set",
            Stage::Manifests => "manifests",
            Stage::Listing => "listing",
            Stage::Plan => "plan",
            Stage::Execute => "execute",
            Stage::Verify => "verify",
            Stage::Done => "done",
        }
    }

    fn from_u8(value: u8) -> Stage {
        Stage::ALL.get(usize::from(value)).copied().unwrap_or(Stage::Done)
    }
}

/// The current stage, shared between the orchestrator (writer) and the display (reader).
#[derive(Debug, Default)]
pub struct StageCell(AtomicU8);

impl StageCell {
    pub fn set(&self, stage: Stage) {
        self.0.store(stage as u8, Ordering::Relaxed);
    }

    pub fn get(&self) -> Stage {
        Stage::from_u8(self.0.load(Ordering::Relaxed))
    }
}

/// The counters at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    pub stage: Stage,
    /// Live snapshots whose manifests are all ingested, of `manifests_total`.
    pub manifests_done: u64,
    pub manifests_total: u64,
    pub referenced_ids: u64,
    pub listed_objects: u64,
    pub planned_deletes: u64,
    pub deleted: u64,
    /// Objects listed again by verify after the deletes.
    pub verify_listed: u64,
}

impl Counters {
    pub fn read(progress: &Progress) -> Counters {
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        Counters {
            stage: progress.stage.get(),
            manifests_done: load(&progress.ingest.snapshots_done),
            manifests_total: load(&progress.ingest.snapshots_total),
            referenced_ids: load(&progress.ingest.referenced_ids),
            listed_objects: load(&progress.listed),
            planned_deletes: load(&progress.planned),
            deleted: load(&progress.deleted),
            verify_listed: load(&progress.verify_listed),
        }
    }

    /// The count the stage advances, and its total when known: what the rate and the ETA
    /// are of.
    fn stage_work(&self) -> (u64, Option<u64>) {
        match self.stage {
            Stage::LiveSet | Stage::Manifests => (self.manifests_done, Some(self.manifests_total)),
            Stage::Listing | Stage::Plan => (self.listed_objects, None),
            Stage::Execute | Stage::Done => (self.deleted, Some(self.planned_deletes)),
            Stage::Verify => (self.verify_listed, None),
        }
    }
}

/// One `progress` event: the counters, and the stage's rate and ETA.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub counters: Counters,
    /// Per second, of the stage's own count (snapshots in `manifests`, listed objects in
    /// `listing` and `plan`, deletes in `execute`, objects listed again in `verify`).
    pub rate_per_s: f64,
    /// Seconds left at that rate; only when the stage's total is known and the rate is not 0.
    pub eta_s: Option<u64>,
}

/// The event for `now`, given the counters `elapsed` earlier.
pub fn event(before: &Counters, now: &Counters, elapsed: Duration) -> Event {
    let (done, total) = now.stage_work();
    let (done_before, _) = Counters { stage: now.stage, ..*before }.stage_work();
    let secs = elapsed.as_secs_f64();
    let rate_per_s = if secs > 0.0 { done.saturating_sub(done_before) as f64 / secs } else { 0.0 };
    let eta_s =
        total.filter(|_| rate_per_s > 0.0).map(|total| (total.saturating_sub(done) as f64 / rate_per_s).ceil() as u64);
    Event { counters: *now, rate_per_s, eta_s }
}

/// A `progress` event as `--log-format json` writes it: one line on stderr, in the shape of
/// `tracing-subscriber`'s JSON format (spec 8.5). It mirrors what [`Event::log`] logs (a
/// unit test compares the two), for the event's schema.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub(crate) struct EventLine {
    /// When the event was logged: RFC 3339, UTC, microseconds.
    pub timestamp: String,
    #[schemars(extend("const" = "INFO"))]
    pub level: String,
    pub fields: EventFields,
    #[schemars(extend("const" = EVENT_TARGET))]
    pub target: String,
}

/// The `fields` of a `progress` event: the counters so far, and the stage's rate and ETA.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct EventFields {
    #[schemars(extend("const" = EVENT_MESSAGE))]
    pub message: &'static str,
    pub stage: Stage,
    /// Live snapshots whose manifests are all read, of `manifests_total`.
    pub manifests_done: u64,
    pub manifests_total: u64,
    pub referenced_ids: u64,
    pub listed_objects: u64,
    pub planned_deletes: u64,
    pub deleted: u64,
    /// Per second since the previous event, of the stage's own count (snapshots in
    /// `manifests`, listed objects in `listing` and `plan`, deletes in `execute` and `done`,
    /// objects listed again in `verify`), to one decimal.
    pub rate_per_s: f64,
    /// Seconds left at that rate: only where the stage's total is known and the rate is not 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "u64")]
    pub eta_s: Option<u64>,
}

impl Event {
    /// The fields the event logs.
    pub fn fields(&self) -> EventFields {
        let c = &self.counters;
        EventFields {
            message: EVENT_MESSAGE,
            stage: c.stage,
            manifests_done: c.manifests_done,
            manifests_total: c.manifests_total,
            referenced_ids: c.referenced_ids,
            listed_objects: c.listed_objects,
            planned_deletes: c.planned_deletes,
            deleted: c.deleted,
            rate_per_s: (self.rate_per_s * 10.0).round() / 10.0,
            eta_s: self.eta_s,
        }
    }

    /// Logs the event's [`EventFields`]; with `--log-format json` it is one JSON line, an
    /// [`EventLine`].
    pub fn log(&self) {
        let f = self.fields();
        tracing::info!(
            target: EVENT_TARGET,
            stage = f.stage.name(),
            manifests_done = f.manifests_done,
            manifests_total = f.manifests_total,
            referenced_ids = f.referenced_ids,
            listed_objects = f.listed_objects,
            planned_deletes = f.planned_deletes,
            deleted = f.deleted,
            rate_per_s = f.rate_per_s,
            eta_s = f.eta_s,
            "{}",
            f.message
        );
    }
}

/// How a run shows its progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Off,
    /// Bars on stderr, a terminal.
    Bars,
    /// A `progress` event every interval.
    Events(Duration),
}

impl Mode {
    /// `interval` is `None` for `--progress-interval 0`, which turns both forms off.
    pub(crate) fn choose(interval: Option<Duration>, stderr_is_terminal: bool) -> Mode {
        match interval {
            None => Mode::Off,
            Some(_) if stderr_is_terminal => Mode::Bars,
            Some(every) => Mode::Events(every),
        }
    }
}

/// The running display; [`Display::finish`] stops it once the run is over.
pub struct Display {
    task: Option<tokio::task::JoinHandle<()>>,
    done: Arc<tokio::sync::Notify>,
}

/// How often the bars are refreshed from the counters.
const BAR_REFRESH: Duration = Duration::from_millis(200);

impl Display {
    /// Starts showing `progress` in the given mode; call from inside the runtime. `bars` is
    /// where bars are drawn, the one the log writer ([`LogWriter`]) suspends.
    pub fn start(mode: Mode, progress: Arc<Progress>, bars: MultiProgress) -> Display {
        let done = Arc::new(tokio::sync::Notify::new());
        let task = match mode {
            Mode::Off => None,
            Mode::Bars => Some(tokio::spawn(show_bars(progress, bars, Arc::clone(&done)))),
            Mode::Events(every) => Some(tokio::spawn(log_events(progress, every, Arc::clone(&done)))),
        };
        Display { task, done }
    }

    /// Marks the run done and waits for the display's last update (the last event, the
    /// bars finished).
    pub async fn finish(self) {
        if let Some(task) = self.task {
            self.done.notify_one();
            let _ = task.await;
        }
    }
}

async fn log_events(progress: Arc<Progress>, every: Duration, done: Arc<tokio::sync::Notify>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut before = (Counters::read(&progress), Instant::now());
    loop {
        let finished = tokio::select! {
            _ = tick.tick() => false,
            () = done.notified() => true,
        };
        let mut now = Counters::read(&progress);
        if finished {
            now.stage = Stage::Done;
        }
        event(&before.0, &now, before.1.elapsed()).log();
        before = (now, Instant::now());
        if finished {
            return;
        }
    }
}

/// One bar per stage, added when the stage starts and finished when it is over.
struct Bars {
    multi: MultiProgress,
    manifests: Option<ProgressBar>,
    listing: Option<ProgressBar>,
    execute: Option<ProgressBar>,
    verify: Option<ProgressBar>,
}

const COUNTED: &str = "{prefix:>9} [{bar:30}] {human_pos}/{human_len} {msg}, {rate}, ETA {eta}";
const UNCOUNTED: &str = "{prefix:>9} {spinner} {human_pos} {msg}, {rate}, {elapsed}";

fn new_bar(multi: &MultiProgress, name: &str, counted: bool) -> ProgressBar {
    // Added first: a bar styled before it joins draws once on its own, a line that stays.
    let bar = multi.add(ProgressBar::no_length());
    let template = if counted { COUNTED } else { UNCOUNTED };
    if let Ok(style) = ProgressStyle::with_template(template) {
        let rate = |state: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{}/s", HumanCount(state.per_sec() as u64));
        };
        bar.set_style(style.with_key("rate", rate).progress_chars("=> "));
    }
    bar.set_prefix(name.to_owned());
    bar
}

/// Updates a bar that is not finished yet, and finishes it once its stage is `past`. A
/// finished bar is left alone: it shows its stage's final count and rate.
fn advance(bar: &ProgressBar, past: bool, update: impl FnOnce(&ProgressBar)) {
    if bar.is_finished() {
        return;
    }
    update(bar);
    if past {
        bar.finish();
    }
}

impl Bars {
    fn update(&mut self, c: &Counters) {
        let stage = c.stage;
        if stage >= Stage::Manifests {
            let bar = self.manifests.get_or_insert_with(|| new_bar(&self.multi, "manifests", true));
            advance(bar, stage > Stage::Manifests, |bar| {
                bar.set_length(c.manifests_total);
                bar.set_position(c.manifests_done);
                bar.set_message(format!("snapshots, {} ids", HumanCount(c.referenced_ids)));
            });
            let bar = self.listing.get_or_insert_with(|| new_bar(&self.multi, "listing", false));
            advance(bar, stage > Stage::Plan, |bar| {
                bar.set_position(c.listed_objects);
                bar.set_message(format!("listed, {} planned", HumanCount(c.planned_deletes)));
            });
        }
        if (Stage::Execute..Stage::Done).contains(&stage) || self.execute.is_some() {
            let bar = self.execute.get_or_insert_with(|| new_bar(&self.multi, "execute", true));
            advance(bar, stage > Stage::Execute, |bar| {
                bar.set_length(c.planned_deletes);
                bar.set_position(c.deleted);
                bar.set_message("deleted");
            });
        }
        if stage == Stage::Verify || self.verify.is_some() {
            let bar = self.verify.get_or_insert_with(|| new_bar(&self.multi, "verify", false));
            advance(bar, stage > Stage::Verify, |bar| {
                bar.set_position(c.verify_listed);
                bar.set_message("listed again");
            });
        }
    }
}

async fn show_bars(progress: Arc<Progress>, multi: MultiProgress, done: Arc<tokio::sync::Notify>) {
    let mut bars = Bars { multi, manifests: None, listing: None, execute: None, verify: None };
    let mut tick = tokio::time::interval(BAR_REFRESH);
    loop {
        let finished = tokio::select! {
            _ = tick.tick() => false,
            () = done.notified() => true,
        };
        let mut counters = Counters::read(&progress);
        if finished {
            counters.stage = Stage::Done;
        }
        bars.update(&counters);
        if finished {
            // The bars stay on screen above the summary, each at its final count.
            for bar in [&bars.manifests, &bars.listing, &bars.execute, &bars.verify].into_iter().flatten() {
                if !bar.is_finished() {
                    bar.abandon();
                }
            }
            return;
        }
    }
}

/// The log's writer while bars may be drawn: each line is written with the bars
/// suspended, so a log line never tears them.
pub(crate) struct LogWriter(pub MultiProgress);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.suspend(|| std::io::stderr().write(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(stage: Stage) -> Counters {
        Counters {
            stage,
            manifests_done: 0,
            manifests_total: 0,
            referenced_ids: 0,
            listed_objects: 0,
            planned_deletes: 0,
            deleted: 0,
            verify_listed: 0,
        }
    }

    #[test]
    fn manifests_rate_and_eta_come_from_snapshots() {
        let before = Counters { manifests_total: 100, manifests_done: 10, ..counters(Stage::Manifests) };
        let now = Counters { manifests_done: 30, referenced_ids: 5_000, ..before };
        let e = event(&before, &now, Duration::from_secs(10));
        assert_eq!(e.rate_per_s, 2.0);
        assert_eq!(e.eta_s, Some(35), "70 snapshots left at 2/s");
        assert_eq!(e.counters, now);
    }

    #[test]
    fn listing_has_a_rate_but_no_eta() {
        let before = Counters { listed_objects: 1_000, ..counters(Stage::Listing) };
        let now = Counters { listed_objects: 6_000, planned_deletes: 40, ..before };
        let e = event(&before, &now, Duration::from_millis(2_500));
        assert_eq!(e.rate_per_s, 2_000.0);
        assert_eq!(e.eta_s, None, "the number of objects to list is unknown");
    }

    #[test]
    fn execute_eta_is_of_the_planned_deletes() {
        let before = Counters { planned_deletes: 1_000, deleted: 100, ..counters(Stage::Execute) };
        let now = Counters { deleted: 400, ..before };
        let e = event(&before, &now, Duration::from_secs(3));
        assert_eq!(e.rate_per_s, 100.0);
        assert_eq!(e.eta_s, Some(6));
    }

    #[test]
    fn no_progress_means_no_eta_and_a_zero_interval_no_rate() {
        let c = Counters { planned_deletes: 10, deleted: 5, ..counters(Stage::Execute) };
        assert_eq!(event(&c, &c, Duration::from_secs(1)).eta_s, None);
        let e = event(&c, &Counters { deleted: 7, ..c }, Duration::ZERO);
        assert_eq!((e.rate_per_s, e.eta_s), (0.0, None));
    }

    #[test]
    fn a_new_stage_rates_its_own_count() {
        // The listing ran ahead during the manifests stage: its count, not the snapshots',
        // is the rate once the stage is `listing`.
        let before =
            Counters { manifests_done: 5, manifests_total: 5, listed_objects: 500, ..counters(Stage::Manifests) };
        let now = Counters { stage: Stage::Listing, listed_objects: 1_500, ..before };
        assert_eq!(event(&before, &now, Duration::from_secs(1)).rate_per_s, 1_000.0);
    }

    /// What the test's subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The line `event.log()` writes in the JSON log format (`--log-format json`).
    fn logged(event: &Event) -> serde_json::Value {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt().json().with_writer(move || writer.clone()).finish();
        tracing::subscriber::with_default(subscriber, || event.log());
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn the_logged_event_is_its_mirror_type() {
        // The mirror (`EventLine`, `EventFields`) is what the event's schema is generated
        // from: a field logged but not mirrored, mirrored but not logged, renamed or of
        // another type on one side makes the two lines differ.
        for eta_s in [Some(35), None] {
            for stage in Stage::ALL {
                let counters = Counters {
                    manifests_done: 1,
                    manifests_total: 2,
                    referenced_ids: 3,
                    listed_objects: 4,
                    planned_deletes: 5,
                    deleted: 6,
                    verify_listed: 7,
                    ..counters(stage)
                };
                let event = Event { counters, rate_per_s: 2.25, eta_s };
                let line = logged(&event);
                let timestamp = line["timestamp"].as_str().unwrap().to_owned();
                let mirror =
                    EventLine { timestamp, level: "INFO".into(), fields: event.fields(), target: EVENT_TARGET.into() };
                assert_eq!(line, serde_json::to_value(&mirror).unwrap(), "{stage:?}, eta {eta_s:?}");
                assert_eq!(line["fields"]["stage"], stage.name());
                assert_eq!(line["fields"].get("eta_s").is_some(), eta_s.is_some());
            }
        }
    }

    #[test]
    fn stage_cell_round_trips_and_mode_follows_the_terminal() {
        let cell = StageCell::default();
        assert_eq!(cell.get(), Stage::LiveSet);
        for stage in Stage::ALL {
            cell.set(stage);
            assert_eq!(cell.get(), stage);
        }
        let every = Some(Duration::from_secs(10));
        assert_eq!(Mode::choose(every, true), Mode::Bars);
        assert_eq!(Mode::choose(every, false), Mode::Events(Duration::from_secs(10)));
        assert_eq!(Mode::choose(None, true), Mode::Off);
        assert_eq!(Mode::choose(None, false), Mode::Off);
    }
}
