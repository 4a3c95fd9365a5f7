//! What a run shows while it goes: a live progress line on a terminal, plain
//! lines otherwise, or one JSON object per event with `--json`; then a
//! summary of every step.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flow_engine::executor::{Event, Status, StepResult, humanize};
use flow_engine::run::{Observer, RunEvent, RunStatus};
use flow_engine::{Pipeline, Progress, StepIndex};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::output;

enum Mode {
    Json,
    Terminal(ProgressBar),
    Plain,
}

/// The running steps and their counters, shared with the thread that
/// refreshes the progress line.
type Running = Arc<Mutex<BTreeMap<String, Arc<Progress>>>>;

pub struct Display {
    pipeline: Arc<Pipeline>,
    mode: Mode,
    total: usize,
    finished: usize,
    running: Running,
    started: Instant,
}

/// The progress line: each running step, with its units done (files,
/// objects) and the rows and bytes it moved.
fn progress_line(running: &Running) -> String {
    let running = running
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let steps: Vec<String> = running
        .iter()
        .map(|(id, progress)| {
            let rows = progress.rows.load(Ordering::Relaxed);
            let bytes = progress.bytes.load(Ordering::Relaxed);
            let total = progress.units_total.load(Ordering::Relaxed);
            let mut parts = Vec::new();
            if total > 0 {
                let done = progress.units_done.load(Ordering::Relaxed);
                parts.push(format!("{done}/{total}"));
            }
            if rows > 0 {
                parts.push(format!("{rows} rows"));
            }
            if bytes > 0 {
                parts.push(bytes_text(bytes));
            }
            if parts.is_empty() {
                id.clone()
            } else {
                format!("{id} ({})", parts.join(", "))
            }
        })
        .collect();
    if steps.is_empty() {
        String::new()
    } else {
        format!("running {}", steps.join(", "))
    }
}

impl Observer for Display {
    fn started(&mut self, run: i64, environment: &str, steps: usize) {
        self.run_started(run, environment, steps);
    }

    fn event(&mut self, event: &Event<'_>) {
        self.step_event(event);
    }

    fn finished(&mut self, run: i64, status: RunStatus, results: &HashMap<StepIndex, StepResult>) {
        self.finish(run, status.as_str(), results);
    }
}

impl Display {
    pub fn new(pipeline: Arc<Pipeline>, json: bool, plain: bool) -> Self {
        let mode = if json {
            Mode::Json
        } else if !plain && std::io::stderr().is_terminal() && std::env::var_os("CI").is_none() {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{pos}/{len}] {elapsed} {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            Mode::Terminal(bar)
        } else {
            Mode::Plain
        };
        let running: Running = Arc::default();
        if let Mode::Terminal(bar) = &mode {
            // Bytes and rows move between events: refresh the line on a timer.
            let (bar, running) = (bar.downgrade(), Arc::clone(&running));
            std::thread::spawn(move || {
                while let Some(bar) = bar.upgrade() {
                    if bar.is_finished() {
                        break;
                    }
                    bar.set_message(progress_line(&running));
                    drop(bar);
                    std::thread::sleep(Duration::from_millis(250));
                }
            });
        }
        Self {
            pipeline,
            mode,
            total: 0,
            finished: 0,
            running,
            started: Instant::now(),
        }
    }

    fn line(&self, text: &str) {
        match &self.mode {
            Mode::Terminal(bar) => bar.println(text),
            Mode::Plain => output::note(text),
            Mode::Json => {}
        }
    }

    fn emit(event: &RunEvent) {
        output::out(&format!(
            "{}\n",
            serde_json::to_string(event).unwrap_or_default()
        ));
    }

    fn run_started(&mut self, run: i64, environment: &str, steps: usize) {
        self.total = steps;
        if let Mode::Terminal(bar) = &self.mode {
            bar.set_length(steps as u64);
        }
        match &self.mode {
            Mode::Json => Self::emit(&RunEvent::RunStarted {
                run,
                flow: self.pipeline.name.clone(),
                environment: environment.to_owned(),
                steps: self.total,
            }),
            _ => self.line(&format!(
                "run {run}: {} {} of `{}` in environment `{environment}`",
                self.total,
                if self.total == 1 { "step" } else { "steps" },
                self.pipeline.name
            )),
        }
    }

    fn step_event(&mut self, event: &Event<'_>) {
        if let Mode::Json = self.mode {
            Self::emit(&RunEvent::of_step(&self.pipeline, event));
        }
        match event {
            Event::Started { step, progress, .. } => {
                let id = self.id(*step);
                if let Mode::Plain = self.mode {
                    self.line(&format!("start {id}"));
                }
                self.lock().insert(id, Arc::clone(progress));
            }
            Event::Retrying {
                step,
                attempt,
                error,
                delay,
            } => {
                let id = self.id(*step);
                self.line(&format!(
                    "retry {id}: attempt {attempt} failed ({}); next in {}",
                    error.report,
                    humanize(*delay)
                ));
            }
            Event::Finished { step, result } => {
                let id = self.id(*step);
                self.lock().remove(&id);
                self.finished += 1;
                self.finished_line(&id, result);
            }
        }
        if let Mode::Terminal(bar) = &self.mode {
            bar.set_position(self.finished as u64);
            bar.set_message(progress_line(&self.running));
        }
    }

    fn finished_line(&self, id: &str, result: &StepResult) {
        let took = humanize(result.duration);
        if let Mode::Json = self.mode {
            return;
        }
        match &result.status {
            Status::Succeeded(outcome) => {
                let note = outcome
                    .note
                    .as_deref()
                    .map(|n| format!(": {n}"))
                    .unwrap_or_default();
                self.line(&format!("done  {id} ({took}){note}"));
            }
            Status::Skipped { since } => {
                self.line(&format!("skip  {id} (unchanged since run {since})"))
            }
            Status::Failed(error) => {
                self.line(&format!("FAIL  {id} ({took})"));
                self.line(&output::render(&error.report));
            }
            Status::Cancelled => self.line(&format!("stop  {id} (cancelled after {took})")),
            Status::NotRun { reason } => match reason {
                Some(reason) => self.line(&format!("----  {id} (not run: {reason})")),
                None => self.line(&format!("----  {id} (not run)")),
            },
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<Progress>>> {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn id(&self, step: StepIndex) -> String {
        self.pipeline.steps[step].id.to_string()
    }

    fn finish(&mut self, run: i64, status: &'static str, results: &HashMap<StepIndex, StepResult>) {
        let elapsed = self.started.elapsed();
        match std::mem::replace(&mut self.mode, Mode::Plain) {
            Mode::Json => {
                Self::emit(&RunEvent::RunFinished {
                    run,
                    status,
                    seconds: elapsed.as_secs_f64(),
                });
                return;
            }
            Mode::Terminal(bar) => bar.finish_and_clear(),
            Mode::Plain => {}
        }
        // In the flow's order (the plan's), whatever ran or was skipped:
        // the same summary from run to run.
        let position: HashMap<StepIndex, usize> = self
            .pipeline
            .order
            .iter()
            .enumerate()
            .filter_map(|(at, node)| match self.pipeline.graph[*node] {
                flow_engine::Node::Step(step) => Some((step, at)),
                flow_engine::Node::GroupDone(_) => None,
            })
            .collect();
        let mut rows: Vec<(&StepIndex, &StepResult)> = results.iter().collect();
        rows.sort_by_key(|(i, _)| (position.get(*i).copied().unwrap_or(usize::MAX), **i));
        let width = rows
            .iter()
            .map(|(i, _)| self.pipeline.steps[**i].id.to_string().len())
            .max()
            .unwrap_or(4)
            .max(4);
        let mut text = format!("run {run} {status} in {}\n", humanize(elapsed));
        text.push_str(&format!(
            "  {:width$}  {:9}  {:>7}  {:>10}  {:>10}\n",
            "step", "status", "time", "rows", "bytes"
        ));
        for (index, result) in rows {
            let status = result.status.name();
            let (rows, bytes) = match &result.status {
                Status::Succeeded(outcome) => (outcome.rows.to_string(), bytes_text(outcome.bytes)),
                _ => ("-".into(), "-".into()),
            };
            let id = self.pipeline.steps[*index].id.to_string();
            text.push_str(&format!(
                "  {id:width$}  {status:9}  {:>7}  {rows:>10}  {bytes:>10}\n",
                humanize(result.duration)
            ));
        }
        output::out(&text);
    }
}

fn bytes_text(bytes: u64) -> String {
    match bytes {
        0 => "0".into(),
        b if b < 1024 => format!("{b} B"),
        b if b < 1024 * 1024 => format!("{:.1} KiB", b as f64 / 1024.0),
        b if b < 1024 * 1024 * 1024 => format!("{:.1} MiB", b as f64 / 1048576.0),
        b => format!("{:.2} GiB", b as f64 / 1073741824.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_line_shows_units_rows_and_bytes() {
        let running: Running = Arc::default();
        let transform = Arc::new(Progress::default());
        transform.units_total.store(3, Ordering::Relaxed);
        transform.units_done.store(1, Ordering::Relaxed);
        let load = Arc::new(Progress::default());
        load.add_rows(1200);
        load.add_bytes(2048);
        {
            let mut steps = running
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            steps.insert("pg:model:transform".into(), transform);
            steps.insert("pg:source:load".into(), load);
            steps.insert("pg:flow:configure".into(), Arc::new(Progress::default()));
        }
        assert_eq!(
            progress_line(&running),
            format!(
                "running pg:flow:configure, pg:model:transform (1/3), pg:source:load (1200 rows, {})",
                bytes_text(2048)
            )
        );
    }
}
