//! Progress bars on a terminal: a line per image being pulled (bytes, rate, bar), then a line for
//! the build (the image being written, bytes, rate), kept below the log lines.
//!
//! Drawn only where someone watches: stderr is a terminal, no `-q`, no `CI` in the environment,
//! and not `TERM=dumb`. Everywhere else the log lines are all there is, as before.

use std::ffi::OsStr;
use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use builder::Progress;

/// Events come with every network read and every write of the build: redraw at most this often.
const REDRAW: Duration = Duration::from_millis(100);
/// Cells inside the brackets of a bar.
const BAR_CELLS: usize = 16;
/// Below this many columns for the image's name, the bar is left out to make room.
const MIN_NAME: usize = 16;
/// The width assumed when the terminal does not tell.
const DEFAULT_COLUMNS: usize = 80;
/// Width of a size such as `123.4 MiB` (one more from 1000.0 to 1023.9).
const SIZE_WIDTH: usize = 9;
/// Width of a rate such as `123.4 MiB/s`.
const RATE_WIDTH: usize = 11;

/// Whether bars belong on stderr, from `-q`, whether stderr is a terminal, and the values of
/// `CI` and `TERM`.
fn wanted(quiet: bool, stderr_is_terminal: bool, ci: Option<&OsStr>, term: Option<&OsStr>) -> bool {
    let in_ci = ci.is_some_and(|value| !value.is_empty());
    !quiet && stderr_is_terminal && !in_ci && term != Some(OsStr::new("dumb"))
}

/// Progress bars on stderr.
pub struct Bars {
    screen: Mutex<Screen>,
}

impl fmt::Debug for Bars {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bars").finish_non_exhaustive()
    }
}

impl Bars {
    /// Bars on stderr, if [`wanted`] there.
    pub fn for_stderr(quiet: bool) -> Option<Arc<Bars>> {
        let stderr = io::stderr();
        let ci = std::env::var_os("CI");
        let term = std::env::var_os("TERM");
        wanted(quiet, stderr.is_terminal(), ci.as_deref(), term.as_deref())
            .then(|| Arc::new(Bars::new(Box::new(stderr), stderr_columns)))
    }

    fn new(out: Box<dyn Write + Send>, columns: fn() -> usize) -> Bars {
        Bars {
            screen: Mutex::new(Screen {
                out,
                columns,
                pulls: Vec::new(),
                build: None,
                drawn: 0,
                last_draw: None,
            }),
        }
    }

    fn screen(&self) -> MutexGuard<'_, Screen> {
        // A panic while drawing leaves nothing half-done that matters.
        self.screen.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes `text` (whole log lines) above the bars.
    pub fn print_above(&self, text: &[u8]) {
        self.screen().print_above(text, Instant::now());
    }

    /// Takes the bars off the screen for good: the command is over.
    pub fn finish(&self) {
        self.screen().finish(Instant::now());
    }
}

impl Progress for Bars {
    fn pull_started(&self, image: &str, bytes: u64) {
        self.screen().pull_started(image, bytes, Instant::now());
    }

    fn pull_bytes(&self, image: &str, bytes: u64) {
        self.screen().pull_bytes(image, bytes, Instant::now());
    }

    fn pull_finished(&self, image: &str) {
        self.screen().pull_finished(image, Instant::now());
    }

    fn build_image(&self, image: &str) {
        self.screen().build_image(image, Instant::now());
    }

    fn build_bytes(&self, bytes: u64) {
        self.screen().build_bytes(bytes, Instant::now());
    }
}

/// Where tracing writes a log line: straight to stderr, or, when bars are shown, above them
/// (the line is kept until the writer is dropped, so that the bars are cleared once for it).
pub enum LogWriter {
    Stderr(io::Stderr),
    AboveBars { bars: Arc<Bars>, line: Vec<u8> },
}

impl LogWriter {
    pub fn new(bars: Option<&Arc<Bars>>) -> LogWriter {
        match bars {
            Some(bars) => LogWriter::AboveBars {
                bars: Arc::clone(bars),
                line: Vec::new(),
            },
            None => LogWriter::Stderr(io::stderr()),
        }
    }
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            LogWriter::Stderr(stderr) => stderr.write(buf),
            LogWriter::AboveBars { line, .. } => {
                line.extend_from_slice(buf);
                Ok(buf.len())
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            LogWriter::Stderr(stderr) => stderr.flush(),
            LogWriter::AboveBars { .. } => Ok(()),
        }
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        if let LogWriter::AboveBars { bars, line } = self {
            if !line.is_empty() {
                bars.print_above(line);
            }
        }
    }
}

/// The width of the terminal on stderr.
fn stderr_columns() -> usize {
    match rustix::termios::tcgetwinsize(io::stderr()) {
        Ok(size) if size.ws_col > 0 => usize::from(size.ws_col),
        _ => DEFAULT_COLUMNS,
    }
}

/// An image being pulled.
struct Transfer {
    image: String,
    total: u64,
    done: u64,
    started: Instant,
}

/// The build writing the outputs.
struct Building {
    image: String,
    written: u64,
    started: Instant,
}

/// What is shown, and how many lines of it are on the screen above the cursor.
struct Screen {
    out: Box<dyn Write + Send>,
    columns: fn() -> usize,
    pulls: Vec<Transfer>,
    build: Option<Building>,
    drawn: usize,
    last_draw: Option<Instant>,
}

impl Screen {
    fn pull_started(&mut self, image: &str, total: u64, now: Instant) {
        self.pulls.push(Transfer {
            image: image.to_string(),
            total,
            done: 0,
            started: now,
        });
        self.redraw(now);
    }

    fn pull_bytes(&mut self, image: &str, bytes: u64, now: Instant) {
        if let Some(transfer) = self.pulls.iter_mut().find(|t| t.image == image) {
            transfer.done += bytes;
            self.tick(now);
        }
    }

    fn pull_finished(&mut self, image: &str, now: Instant) {
        self.pulls.retain(|t| t.image != image);
        self.redraw(now);
    }

    fn build_image(&mut self, image: &str, now: Instant) {
        match &mut self.build {
            Some(build) => build.image = image.to_string(),
            None => {
                self.build = Some(Building {
                    image: image.to_string(),
                    written: 0,
                    started: now,
                })
            }
        }
        self.redraw(now);
    }

    fn build_bytes(&mut self, bytes: u64, now: Instant) {
        if let Some(build) = &mut self.build {
            build.written += bytes;
            self.tick(now);
        }
    }

    fn finish(&mut self, now: Instant) {
        self.pulls.clear();
        self.build = None;
        self.redraw(now);
    }

    fn print_above(&mut self, text: &[u8], now: Instant) {
        let mut out = self.clearing().into_bytes();
        out.extend_from_slice(text);
        self.draw(out, now);
    }

    /// Redraws unless the last drawing is recent.
    fn tick(&mut self, now: Instant) {
        if self.last_draw.is_none_or(|last| now.duration_since(last) >= REDRAW) {
            self.redraw(now);
        }
    }

    fn redraw(&mut self, now: Instant) {
        let out = self.clearing().into_bytes();
        self.draw(out, now);
    }

    /// Writes `out` followed by the bars, all at once.
    fn draw(&mut self, mut out: Vec<u8>, now: Instant) {
        let lines = self.lines(now, (self.columns)());
        for line in &lines {
            out.extend_from_slice(line.as_bytes());
            out.push(b'\n');
        }
        self.drawn = lines.len();
        self.last_draw = Some(now);
        // Progress never fails a command: a stderr that cannot be written shows nothing.
        let _ = self.out.write_all(&out).and_then(|()| self.out.flush());
    }

    /// What takes the bars off the screen: up to the first line, then clear to the end.
    fn clearing(&mut self) -> String {
        let drawn = std::mem::take(&mut self.drawn);
        if drawn == 0 {
            String::new()
        } else {
            format!("\x1b[{drawn}A\r\x1b[J")
        }
    }

    fn lines(&self, now: Instant, columns: usize) -> Vec<String> {
        let pulls = self
            .pulls
            .iter()
            .map(|t| pull_line(&t.image, t.done, t.total, now.duration_since(t.started), columns));
        let build = self
            .build
            .iter()
            .map(|b| build_line(&b.image, b.written, now.duration_since(b.started), columns));
        pulls.chain(build).collect()
    }
}

/// `IMAGE  [=====     ]  12.3 MiB / 30.1 MiB   2.1 MiB/s`, fitted to `columns`.
fn pull_line(image: &str, done: u64, total: u64, elapsed: Duration, columns: usize) -> String {
    let figures = format!(
        "{:>SIZE_WIDTH$} / {:<SIZE_WIDTH$} {:>RATE_WIDTH$}",
        size(done),
        size(total),
        rate(done, elapsed)
    );
    fit("", image, Some(&bar(done, total)), &figures, columns)
}

/// `building IMAGE   1.2 GiB written  45.6 MiB/s`, fitted to `columns`.
fn build_line(image: &str, written: u64, elapsed: Duration, columns: usize) -> String {
    let figures = format!(
        "{:>SIZE_WIDTH$} written {:>RATE_WIDTH$}",
        size(written),
        rate(written, elapsed)
    );
    fit("building ", image, None, &figures, columns)
}

/// `label name bar figures` in fewer than `columns` characters (a line reaching the last column
/// wraps on some terminals, and a wrapped line would not be cleared): the name is padded so that
/// the bars of several lines align, or shortened from the left (the tag is the telling part);
/// the bar is left out when there is no room for it.
fn fit(label: &str, name: &str, bar: Option<&str>, figures: &str, columns: usize) -> String {
    let room = columns.saturating_sub(1);
    let name_room = |tail: usize| room.saturating_sub(label.len() + tail);
    let bar = bar.filter(|bar| name_room(figures.len() + bar.len() + 2) >= MIN_NAME);
    let tail = match bar {
        Some(bar) => format!(" {bar} {figures}"),
        None => format!(" {figures}"),
    };
    let name = shorten(name, name_room(tail.len()).max(MIN_NAME));
    format!("{label}{name}{tail}").chars().take(room).collect()
}

/// `name` in exactly `width` characters: padded, or its end after `...`.
fn shorten(name: &str, width: usize) -> String {
    let count = name.chars().count();
    if count <= width {
        return format!("{name:<width$}");
    }
    let keep = width.saturating_sub(3);
    format!("...{}", name.chars().skip(count - keep).collect::<String>())
}

/// `[=====     ]`: `done` of `total` in [`BAR_CELLS`] cells.
fn bar(done: u64, total: u64) -> String {
    let filled = if total == 0 {
        BAR_CELLS
    } else {
        let cells = u128::from(done.min(total)) * BAR_CELLS as u128 / u128::from(total);
        cells as usize
    };
    format!("[{}{}]", "=".repeat(filled), " ".repeat(BAR_CELLS - filled))
}

/// `512 B`, `1.5 KiB`, `12.3 MiB`.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `2.1 MiB/s` on average over `elapsed`; nothing before any time has passed.
fn rate(bytes: u64, elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64();
    if seconds <= 0.0 {
        return String::new();
    }
    format!("{}/s", size((bytes as f64 / seconds) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn sizes_rates_and_bars() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(12 * MIB + 3 * MIB / 10), "12.3 MiB");
        assert_eq!(size(5 << 30), "5.0 GiB");
        assert_eq!(rate(5 * MIB, Duration::from_secs(2)), "2.5 MiB/s");
        assert_eq!(rate(100, Duration::from_millis(500)), "200 B/s");
        assert_eq!(rate(100, Duration::ZERO), "");
        assert_eq!(bar(0, 10), "[                ]");
        assert_eq!(bar(5, 10), "[========        ]");
        assert_eq!(bar(1, 3), "[=====           ]");
        // More than announced (a registry sending extra) stays a full bar.
        assert_eq!(bar(11, 10), "[================]");
        assert_eq!(bar(0, 0), "[================]");
    }

    #[test]
    fn a_pull_line_has_name_bar_bytes_and_rate() {
        let alpine = "docker.io/library/alpine:3.19";
        let line = pull_line(alpine, 15 * MIB, 30 * MIB, Duration::from_secs(3), 100);
        assert_eq!(
            line,
            "docker.io/library/alpine:3.19                  [========        ]  15.0 MiB / 30.0 MiB    5.0 MiB/s"
        );
        assert_eq!(line.len(), 99);
        // Lines of several images align their bars.
        let short = pull_line("a:1", 0, MIB, Duration::from_secs(1), 100);
        assert_eq!(short.find('['), line.find('['));
        assert_eq!(short.len(), line.len());
    }

    #[test]
    fn lines_fit_narrow_terminals() {
        let name = "registry.example.com/a/very/long/repository/name:v1.2.3";
        let line = pull_line(name, MIB, 2 * MIB, Duration::from_secs(1), 80);
        assert_eq!(
            line,
            ".../repository/name:v1.2.3 [========        ]   1.0 MiB / 2.0 MiB     1.0 MiB/s"
        );
        // No room for a bar: the name and the figures stay.
        let narrow = pull_line(name, MIB, 2 * MIB, Duration::from_secs(1), 60);
        assert_eq!(narrow, "...repository/name:v1.2.3   1.0 MiB / 2.0 MiB     1.0 MiB/s");
        // Whatever the width, a line never reaches the last column.
        for columns in [0, 1, 10, 40] {
            let line = build_line(name, MIB, Duration::from_secs(1), columns);
            assert!(line.chars().count() < columns.max(1), "{columns}: {line}");
        }
        assert_eq!(
            build_line(name, MIB, Duration::from_secs(1), 60),
            "building ...itory/name:v1.2.3   1.0 MiB written   1.0 MiB/s"
        );
        assert_eq!(
            build_line("hello:v1", 3 * MIB, Duration::from_secs(2), 60),
            "building hello:v1               3.0 MiB written   1.5 MiB/s"
        );
    }

    #[test]
    fn bars_are_wanted_only_on_a_terminal_someone_watches() {
        let term = Some(OsStr::new("xterm"));
        assert!(wanted(false, true, None, term));
        assert!(wanted(false, true, Some(OsStr::new("")), None));
        assert!(!wanted(true, true, None, term), "-q");
        assert!(!wanted(false, false, None, term), "a pipe or a file");
        assert!(!wanted(false, true, Some(OsStr::new("true")), term), "CI");
        assert!(!wanted(false, true, None, Some(OsStr::new("dumb"))), "TERM=dumb");
    }

    /// A screen 80 columns wide, writing into the buffer returned with it.
    fn screen() -> (Screen, Arc<Mutex<Vec<u8>>>) {
        struct Shared(Arc<Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let written = Arc::new(Mutex::new(Vec::new()));
        let bars = Bars::new(Box::new(Shared(Arc::clone(&written))), || 80);
        (bars.screen.into_inner().unwrap(), written)
    }

    fn take(written: &Mutex<Vec<u8>>) -> String {
        String::from_utf8(std::mem::take(&mut *written.lock().unwrap())).unwrap()
    }

    #[test]
    fn bars_redraw_in_place_at_most_ten_times_a_second_below_the_log() {
        let (mut screen, written) = screen();
        let start = Instant::now();
        let at = |tenths: u32| start + REDRAW * tenths / 10;
        screen.pull_started("a:1", 100, start);
        screen.pull_started("b:1", 100, start);
        let a = pull_line("a:1", 0, 100, Duration::ZERO, 80);
        let b = pull_line("b:1", 0, 100, Duration::ZERO, 80);
        // The second start took the first line off and drew both.
        assert_eq!(take(&written), format!("{a}\n\x1b[1A\r\x1b[J{a}\n{b}\n"));

        screen.pull_bytes("a:1", 50, at(5));
        assert_eq!(take(&written), "", "too soon after the last drawing");
        screen.pull_bytes("a:1", 10, at(10));
        let a = pull_line("a:1", 60, 100, REDRAW, 80);
        let b = pull_line("b:1", 0, 100, REDRAW, 80);
        assert_eq!(take(&written), format!("\x1b[2A\r\x1b[J{a}\n{b}\n"));

        screen.print_above(b"a log line\n", at(10));
        assert_eq!(take(&written), format!("\x1b[2A\r\x1b[Ja log line\n{a}\n{b}\n"));

        screen.pull_finished("a:1", at(10));
        screen.pull_finished("b:1", at(10));
        assert_eq!(take(&written), format!("\x1b[2A\r\x1b[J{b}\n\x1b[1A\r\x1b[J"));
        screen.build_image("hello:v1", at(10));
        screen.build_bytes(1, at(15));
        screen.build_bytes(1, at(20));
        let building = build_line("hello:v1", 0, Duration::ZERO, 80);
        let built = build_line("hello:v1", 2, REDRAW, 80);
        assert_eq!(take(&written), format!("{building}\n\x1b[1A\r\x1b[J{built}\n"));

        // Once over, nothing is left on the screen.
        screen.finish(at(20));
        assert_eq!(take(&written), "\x1b[1A\r\x1b[J");
        assert_eq!(screen.drawn, 0);
    }
}
