//! Build progress rendering: the executor's [`Event`]s as BuildKit-style plain lines, a live
//! tty view (indicatif), one JSON object per line, or nothing.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use strata_executor::events::{Event, EventSink};

use crate::cli::ProgressArg;

/// The chosen output mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Plain,
    Tty,
    Json,
    Quiet,
}

impl Mode {
    /// `auto` is `tty` on a terminal, `plain` otherwise; `-q` is quiet.
    pub fn choose(arg: ProgressArg, quiet: bool) -> Mode {
        if quiet {
            return Mode::Quiet;
        }
        match arg {
            ProgressArg::Plain => Mode::Plain,
            ProgressArg::Tty => Mode::Tty,
            ProgressArg::Json => Mode::Json,
            ProgressArg::Quiet => Mode::Quiet,
            ProgressArg::Auto => {
                if std::io::stderr().is_terminal() {
                    Mode::Tty
                } else {
                    Mode::Plain
                }
            }
        }
    }
}

/// A renderer; `sink()` hands the executor a callback.
pub struct Progress {
    mode: Mode,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    started: HashMap<usize, Instant>,
    names: HashMap<usize, String>,
    bars: HashMap<usize, ProgressBar>,
    multi: Option<MultiProgress>,
    /// Plain mode: the step whose output was printed last (a blank line separates steps).
    last: Option<usize>,
    /// Steps that printed output (for the end-of-build summary).
    steps: usize,
    cached: usize,
    warnings: Vec<String>,
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

impl Progress {
    /// A renderer for `mode` (tty draws on stderr).
    pub fn new(mode: Mode) -> Arc<Progress> {
        let mut state = State::default();
        if mode == Mode::Tty {
            state.multi = Some(MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        }
        Arc::new(Progress {
            mode,
            state: Mutex::new(state),
        })
    }

    /// The callback for the executor.
    pub fn sink(self: &Arc<Self>) -> EventSink {
        let me = Arc::clone(self);
        Arc::new(move |e: &Event| me.on(e))
    }

    fn on(&self, e: &Event) {
        if self.mode == Mode::Json {
            if let Ok(line) = serde_json::to_string(e) {
                let mut out = std::io::stderr().lock();
                let _ = writeln!(out, "{line}");
            }
            return;
        }
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        if let Event::Warning { message } = e {
            st.warnings.push(message.clone());
        }
        match self.mode {
            Mode::Plain => plain(&mut st, e),
            Mode::Tty => tty(&mut st, e),
            Mode::Json | Mode::Quiet => {}
        }
    }

    /// Prints the summary line (plain and tty) and the warnings.
    pub fn finish(&self, ok: bool, total: Duration) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        if let Some(m) = st.multi.take() {
            let _ = m.clear();
        }
        if matches!(self.mode, Mode::Plain | Mode::Tty) {
            let mut err = std::io::stderr().lock();
            if ok {
                let _ = writeln!(
                    err,
                    "\nBuilt in {} ({} steps, {} cached)",
                    secs(total),
                    st.steps,
                    st.cached
                );
            }
            for w in &st.warnings {
                let _ = writeln!(err, "WARNING: {w}");
            }
        }
    }
}

fn plain(st: &mut State, e: &Event) {
    let mut err = std::io::stderr().lock();
    match e {
        Event::Start { id, name } => {
            if st.last.is_some() {
                let _ = writeln!(err);
            }
            st.last = Some(*id);
            st.started.insert(*id, Instant::now());
            st.names.insert(*id, name.clone());
            let _ = writeln!(err, "#{id} {name}");
        }
        Event::Context {
            id,
            entries,
            hashed,
            hashed_bytes,
            ..
        } => {
            let _ = writeln!(
                err,
                "#{id} {entries} entries, {hashed} hashed ({hashed_bytes} bytes)"
            );
        }
        Event::Output { id, text, .. } => {
            if st.last != Some(*id) {
                let name = st.names.get(id).cloned().unwrap_or_default();
                let _ = writeln!(err, "\n#{id} {name}");
                st.last = Some(*id);
            }
            let t = st.started.get(id).map(|t| t.elapsed()).unwrap_or_default();
            for line in text.trim_end_matches('\n').split('\n') {
                let _ = writeln!(err, "#{id} {:.3} {line}", t.as_secs_f64());
            }
        }
        Event::Done {
            id,
            cached,
            duration,
        } => {
            st.steps += 1;
            if *cached {
                st.cached += 1;
                let _ = writeln!(err, "#{id} CACHED");
            } else {
                let _ = writeln!(err, "#{id} DONE {}", secs(*duration));
            }
        }
        Event::Error { id, message } => {
            let _ = writeln!(err, "#{id} ERROR: {message}");
        }
        Event::Cache { .. } | Event::Warning { .. } | Event::Finished { .. } => {}
    }
}

fn tty(st: &mut State, e: &Event) {
    let Some(multi) = st.multi.clone() else {
        return;
    };
    match e {
        Event::Start { id, name } => {
            let bar = multi.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix} {elapsed:>4} {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(name.clone());
            bar.enable_steady_tick(Duration::from_millis(100));
            st.bars.insert(*id, bar);
            st.names.insert(*id, name.clone());
        }
        Event::Output { id, text, .. } => {
            if let Some(bar) = st.bars.get(id) {
                let last = text.trim_end().lines().last().unwrap_or("").to_string();
                bar.set_message(last);
            }
        }
        Event::Done {
            id,
            cached,
            duration,
        } => {
            st.steps += 1;
            if *cached {
                st.cached += 1;
            }
            if let Some(bar) = st.bars.remove(id) {
                let name = st.names.get(id).cloned().unwrap_or_default();
                let status = if *cached {
                    "CACHED".to_string()
                } else {
                    secs(*duration)
                };
                bar.finish_and_clear();
                let _ = multi.println(format!("=> {name} {status}"));
            }
        }
        Event::Error { id, message } => {
            if let Some(bar) = st.bars.remove(id) {
                bar.finish_and_clear();
            }
            let name = st.names.get(id).cloned().unwrap_or_default();
            let _ = multi.println(format!("=> ERROR {name}: {message}"));
        }
        Event::Context { .. }
        | Event::Cache { .. }
        | Event::Warning { .. }
        | Event::Finished { .. } => {}
    }
}
