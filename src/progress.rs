//! Progress of the long command-line jobs (`statusd credentials import`, `statusd seed`, the
//! load-test drivers): one [`indicatif`] bar on standard error with the rate and the ETA.
//!
//! The bar is drawn only when standard error is a terminal: in a pipe, a log file or a test it
//! draws nothing, and standard output, which carries the jobs' machine-readable results, is
//! never touched. Never used by the server.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use std::time::Duration;

/// A bar of `len` steps counted in `unit` (`lines`, `lists`), on standard error, ticking on its
/// own so the rate and the ETA stay current while a step takes long.
pub fn bar(len: u64, unit: &str) -> ProgressBar {
    let template = format!(
        "{{spinner}} {{msg}} [{{elapsed_precise}}] {{wide_bar}} {{human_pos}}/{{human_len}} \
         {unit} ({{rate}}, ETA {{eta}})"
    );
    let style = ProgressStyle::with_template(&template)
        .expect("the template is valid")
        .with_key(
            "rate",
            |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let rate = state.per_sec();
                let _ = if rate >= 10.0 {
                    write!(w, "{rate:.0}/s")
                } else {
                    write!(w, "{rate:.1}/s")
                };
            },
        )
        .progress_chars("=> ");
    let pb =
        ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr()).with_style(style);
    pb.enable_steady_tick(Duration::from_millis(250));
    pb
}

/// A bar for a job whose steps are not counted in advance: elapsed time and a message.
pub fn spinner(msg: impl Into<String>) -> ProgressBar {
    let style = ProgressStyle::with_template("{spinner} {msg} [{elapsed_precise}]")
        .expect("the template is valid");
    let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(style);
    pb.set_message(msg.into());
    pb.enable_steady_tick(Duration::from_millis(250));
    pb
}

/// Prints `line` to standard error above the bar (or alone when the bar is hidden), so notes
/// and the bar never overwrite each other.
pub fn note(pb: &ProgressBar, line: &str) {
    pb.suspend(|| eprintln!("{line}"));
}
