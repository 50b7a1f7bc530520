//! `cargo xtask dist [--profile NAME] [--check]`: the Debian package of the server.
//!
//! The package is built with Debian's own `dpkg-deb --root-owner-group --build` from a staging
//! tree written under `target/dist/build/`, out of the sources in `packaging/debian/`: the
//! binary (`/usr/bin/switchboard`), the systemd unit, the commented default settings (a
//! conffile), the maintainer scripts, a man page made from the packaged binary's own `--help`,
//! and the documents. `--profile dev` packages the debug build instead of the release one,
//! which is quicker to build, into `target/dist/dev/`; the check exercises whichever binary
//! was packaged.
//!
//! `--check` then installs the package on this machine with `dpkg -i` (as root, and only when
//! no `switchboard` package, user or data folder is there already), checks its files, user
//! and unit (`systemd-analyze verify` when it is installed, else by reading the unit), runs
//! the unit's `ExecStart` line as the unit says (its user, environment, working folder,
//! umask, open-file limit, capabilities, and a mount namespace that makes the file system
//! read-only but for the state folder, as `ProtectSystem=strict` does), creates an account
//! through the installed admin command line, sends a message through the server and waits
//! for its delivery, stops the server with SIGTERM, and removes and purges the package. When
//! `strace` is installed the server runs under it, and every system call, address family and
//! memory mapping it made is checked against the unit's `SystemCallFilter`,
//! `RestrictAddressFamilies` and `MemoryDenyWriteExecute`. Whatever fails, the package is
//! purged again, so that the machine is left as it was found.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

const PACKAGE: &str = "switchboard";
/// The packaging sources, relative to the workspace root.
const SOURCES: &str = "packaging/debian";
const BINARY: &str = "/usr/bin/switchboard";
const UNIT: &str = "/usr/lib/systemd/system/switchboard.service";
const CONFIG: &str = "/etc/switchboard/switchboard.toml";
const STATE: &str = "/var/lib/switchboard";
/// The `PATH` systemd gives a system service.
const SERVICE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The highest `systemd-analyze security` exposure the unit may have (0 to 10, lower is
/// safer); the unit scores well below it, so that the check fails only when the unit's
/// hardening is weakened.
const MAX_EXPOSURE: f64 = 2.0;

struct Options {
    profile: String,
    check: bool,
}

fn options(args: &[String]) -> anyhow::Result<Options> {
    let mut o = Options { profile: "release".into(), check: false };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--check" => o.check = true,
            "--profile" => o.profile = args.next().context("--profile needs a name, such as dev or release")?.clone(),
            other => match other.strip_prefix("--profile=") {
                Some(profile) => o.profile = profile.to_owned(),
                None => bail!("unknown option {other}: cargo xtask dist [--profile NAME] [--check]"),
            },
        }
    }
    Ok(o)
}

pub(crate) fn run(root: &Path, args: &[String]) -> anyhow::Result<()> {
    let o = options(args)?;
    let mut check = o.check;
    if check && let Some(why) = cannot_check() {
        if std::env::var_os("CI").is_some() {
            bail!("cannot run the package check: {why}; under CI it must run");
        }
        eprintln!("dist: skipping the install check: {why}");
        check = false;
    }
    let started = Instant::now();
    crate::run(crate::cargo().args(["build", "-p", PACKAGE, "--bin", PACKAGE, "--profile", &o.profile]))?;
    let built = started.elapsed();
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let profile_dir = match o.profile.as_str() {
        "dev" | "test" => "debug",
        "bench" => "release",
        other => other,
    };
    let binary = target.join(profile_dir).join(PACKAGE);
    let started = Instant::now();
    // Another profile's package goes to a folder of its own, so that it never stands where
    // the release package is looked for.
    let release = o.profile == "release";
    let out = if release { target.join("dist") } else { target.join("dist").join(&o.profile) };
    let deb = package(root, &binary, release, &out)?;
    let packaged = started.elapsed();
    let size = fs::metadata(&deb)?.len();
    eprintln!(
        "dist: built the binary ({} profile) in {:.1} s, the package in {:.1} s: {} ({:.1} MiB)",
        o.profile,
        built.as_secs_f64(),
        packaged.as_secs_f64(),
        deb.display(),
        size as f64 / (1024.0 * 1024.0)
    );
    println!("{}", deb.display());
    if check {
        self::check(&deb, &target.join("dist/check"))?;
    }
    Ok(())
}

/// Why the install check cannot run here, if it cannot.
fn cannot_check() -> Option<String> {
    if !cfg!(target_os = "linux") {
        return Some("it needs Linux".into());
    }
    if Command::new("dpkg").arg("--version").output().is_err() {
        return Some("dpkg is not installed (the check installs the package on a Debian machine)".into());
    }
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|ids| ids.split_whitespace().nth(1));
    if euid != Some("0") {
        return Some("it must run as root, as it installs and removes a package".into());
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Building the package.

/// Writes the staging tree and builds `<out>/switchboard_<version>_<arch>.deb` from it.
fn package(root: &Path, binary: &Path, release: bool, out: &Path) -> anyhow::Result<PathBuf> {
    let src = root.join(SOURCES);
    let version = crate_version()?;
    let reported = capture(Command::new(binary).arg("--version"))?;
    ensure!(
        reported.trim() == format!("{PACKAGE} {version}"),
        "{} says it is `{}`, but crates/switchboard is at {version}: build it again",
        binary.display(),
        reported.trim()
    );
    // Debian sorts `~` before anything, as semver sorts a pre-release before its release; a
    // hyphen would start a Debian revision.
    let deb_version = version.replace('-', "~");
    let arch = capture(Command::new("dpkg").arg("--print-architecture"))
        .context("dpkg --print-architecture: building the package needs Debian's dpkg")?
        .trim()
        .to_owned();

    let work = out.join("build");
    if work.exists() {
        fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;
    }
    let pkg = work.join("debian").join(PACKAGE);
    install(binary, &pkg.join("usr/bin/switchboard"), 0o755)?;
    install(&src.join("switchboard.service"), &pkg.join("usr/lib/systemd/system/switchboard.service"), 0o644)?;
    // Never readable by others, not even before postinst gives it to the service's group.
    install(&src.join("switchboard.toml"), &pkg.join("etc/switchboard/switchboard.toml"), 0o640)?;
    let man = work.join("switchboard.1");
    fs::write(&man, man_page(&src, binary, &version)?)?;
    gzip(&man, &pkg.join("usr/share/man/man1/switchboard.1.gz"))?;
    let doc = pkg.join("usr/share/doc").join(PACKAGE);
    install(&src.join("copyright"), &doc.join("copyright"), 0o644)?;
    install(&root.join("packaging/README.md"), &doc.join("README.Debian"), 0o644)?;
    for (from, to) in
        [("README.md", "README.md.gz"), ("docs/OPERATIONS.md", "OPERATIONS.md.gz"), ("docs/API.md", "API.md.gz")]
    {
        gzip(&root.join(from), &doc.join(to))?;
    }

    let (files, dirs) = tree(&pkg)?;
    for dir in std::iter::once(&pkg).chain(&dirs) {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    }
    let installed_kib: u64 =
        files.iter().map(|f| fs::metadata(f).map(|m| m.len().div_ceil(1024))).sum::<Result<_, _>>()?;
    let installed_kib = installed_kib + dirs.len() as u64;

    let control = pkg.join("DEBIAN");
    for script in ["postinst", "prerm", "postrm"] {
        install(&src.join(script), &control.join(script), 0o755)?;
    }
    install(&src.join("conffiles"), &control.join("conffiles"), 0o644)?;
    let conffiles = fs::read_to_string(src.join("conffiles"))?;
    let conffiles: BTreeSet<&str> = conffiles.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    for conffile in &conffiles {
        ensure!(pkg.join(conffile.trim_start_matches('/')).is_file(), "conffile {conffile} is not in the package");
    }
    let mut sums = Command::new("md5sum");
    sums.current_dir(&pkg);
    for file in &files {
        let relative = file.strip_prefix(&pkg)?;
        if !conffiles.contains(format!("/{}", relative.display()).as_str()) {
            sums.arg(relative);
        }
    }
    fs::write(control.join("md5sums"), capture(&mut sums)?)?;

    // After DEBIAN/ is made: dpkg-shlibdeps finds the package's root by it.
    let (depends, how) = depends(&work, &pkg.join("usr/bin/switchboard"))?;
    eprintln!("dist: Depends: {depends} ({how})");
    let fields = [
        ("@VERSION@", deb_version.clone()),
        ("@ARCH@", arch.clone()),
        ("@MAINTAINER@", maintainer()),
        ("@INSTALLED_SIZE@", installed_kib.to_string()),
        ("@DEPENDS@", format!("{depends}, adduser")),
    ];
    let mut text = fs::read_to_string(src.join("control"))?;
    for (placeholder, value) in fields {
        ensure!(text.contains(placeholder), "packaging/debian/control lacks {placeholder}");
        text = text.replace(placeholder, &value);
    }
    fs::write(control.join("control"), text)?;
    fs::set_permissions(&control, fs::Permissions::from_mode(0o755))?;

    let deb = out.join(format!("{PACKAGE}_{deb_version}_{arch}.deb"));
    // xz, Debian's default, for the release package; a debug build (about 90 MiB) is only
    // ever installed by the check, and xz takes minutes over it where gzip -1 takes seconds.
    let compression: &[&str] = if release { &["-Zxz"] } else { &["-Zgzip", "-z1"] };
    crate::run(
        Command::new("dpkg-deb").arg("--root-owner-group").args(compression).arg("--build").arg(&pkg).arg(&deb),
    )?;
    Ok(deb)
}

/// The server's version, from crates/switchboard/Cargo.toml (through the workspace).
fn crate_version() -> anyhow::Result<String> {
    let metadata = capture(crate::cargo().args(["metadata", "--no-deps", "--format-version", "1"]))?;
    let metadata: serde_json::Value = serde_json::from_str(&metadata)?;
    metadata["packages"]
        .as_array()
        .and_then(|packages| packages.iter().find(|p| p["name"] == PACKAGE))
        .and_then(|p| p["version"].as_str())
        .map(str::to_owned)
        .context("cargo metadata does not list the switchboard package")
}

/// `DEBFULLNAME <DEBEMAIL>`, as Debian's own tools take them, else the project.
fn maintainer() -> String {
    match (std::env::var("DEBFULLNAME"), std::env::var("DEBEMAIL")) {
        (Ok(name), Ok(email)) if !email.contains('<') => format!("{name} <{email}>"),
        (_, Ok(email)) => email,
        _ => "Switchboard developers <https://github.com/switchboard-sms/switchboard>".into(),
    }
}

/// The shared libraries the binary needs, as a `Depends` value, and how it was found:
/// `dpkg-shlibdeps` (from dpkg-dev) when it is installed, else the highest glibc symbol
/// version the binary references.
fn depends(work: &Path, binary: &Path) -> anyhow::Result<(String, &'static str)> {
    fs::write(work.join("debian/control"), format!("Source: {PACKAGE}\n\nPackage: {PACKAGE}\nArchitecture: any\n"))?;
    let relative = binary.strip_prefix(work)?;
    // `-e` and the file are one word: a separate `-e` names an empty file.
    let exec = format!("-e{}", relative.display());
    match Command::new("dpkg-shlibdeps").args(["-O", &exec]).current_dir(work).output() {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            let value = text
                .lines()
                .find_map(|l| l.strip_prefix("shlibs:Depends="))
                .context("dpkg-shlibdeps printed no shlibs:Depends")?;
            let warnings = String::from_utf8_lossy(&out.stderr);
            ensure!(warnings.trim().is_empty(), "dpkg-shlibdeps warned: {warnings}");
            Ok((value.trim().to_owned(), "from dpkg-shlibdeps"))
        }
        Ok(out) => bail!("dpkg-shlibdeps failed: {}", String::from_utf8_lossy(&out.stderr)),
        Err(_) => {
            let bytes = fs::read(binary)?;
            let glibc = glibc_needed(&bytes).context("the binary references no GLIBC_ symbol version")?;
            let mut depends = format!("libc6 (>= {glibc})");
            if contains(&bytes, b"libgcc_s.so.1\0") {
                depends.push_str(", libgcc-s1");
            }
            Ok((depends, "dpkg-shlibdeps is not installed: from the binary's GLIBC_ symbol versions"))
        }
    }
}

/// The highest `GLIBC_x.y[.z]` version named in an ELF binary's dynamic strings.
fn glibc_needed(bytes: &[u8]) -> Option<String> {
    let marker = b"GLIBC_";
    let mut best: Option<Vec<u32>> = None;
    let mut i = 0;
    while let Some(at) = bytes[i..].windows(marker.len()).position(|w| w == marker) {
        let start = i + at + marker.len();
        let end =
            bytes[start..].iter().position(|b| !(b.is_ascii_digit() || *b == b'.')).map_or(bytes.len(), |n| start + n);
        if let Ok(text) = std::str::from_utf8(&bytes[start..end])
            && let Ok(version) = text.split('.').map(str::parse).collect::<Result<Vec<u32>, _>>()
            && best.as_ref().is_none_or(|b| version > *b)
        {
            best = Some(version);
        }
        i = end.max(start);
    }
    best.map(|v| v.iter().map(u32::to_string).collect::<Vec<_>>().join("."))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Copies `from` to `to` (making its folders) with `mode`.
fn install(from: &Path, to: &Path, mode: u32) -> anyhow::Result<()> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::copy(from, to).with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Compresses `from` into `to` as Debian does its documents: `gzip -9n`, without a name or a
/// time stamp, so that the package is the same from one build to the next.
fn gzip(from: &Path, to: &Path) -> anyhow::Result<()> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir)?;
    }
    let file = fs::File::create(to)?;
    let status = Command::new("gzip").args(["-9n", "-c"]).arg(from).stdout(file).status().context("running gzip")?;
    ensure!(status.success(), "gzip {} failed with {status}", from.display());
    fs::set_permissions(to, fs::Permissions::from_mode(0o644))?;
    Ok(())
}

/// The files and the folders under `dir`, sorted.
fn tree(dir: &Path) -> anyhow::Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(path.clone());
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    dirs.sort();
    Ok((files, dirs))
}

/// The man page: `packaging/debian/switchboard.1.in` with the version, the date of the
/// commit built and a COMMANDS section holding every command's `--help`, read from the
/// packaged binary itself so that the page says what this binary does.
fn man_page(src: &Path, binary: &Path, version: &str) -> anyhow::Result<String> {
    let date = Command::new("git")
        .args(["log", "-1", "--format=%cs"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let mut commands = String::new();
    help_sections(binary, &mut Vec::new(), &mut commands)?;
    let page = fs::read_to_string(src.join("switchboard.1.in"))?
        .replace("@VERSION@", version)
        .replace("@DATE@", &date)
        .replace("@COMMANDS@\n", &commands);
    Ok(page)
}

/// Appends the man page section of the command `path` and of each of its subcommands.
fn help_sections(binary: &Path, path: &mut Vec<String>, out: &mut String) -> anyhow::Result<()> {
    let help = capture(Command::new(binary).args(path.iter()).arg("--help"))?;
    let title = std::iter::once(PACKAGE).chain(path.iter().map(String::as_str)).collect::<Vec<_>>().join(" ");
    out.push_str(&format!(".SS \"{}\"\n", escape(&title)));
    let mut section = None;
    let mut subcommands = Vec::new();
    let mut lines = help.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(' ') && line.ends_with(':') {
            section = Some(line.trim_end_matches(':').to_owned());
            out.push_str(&format!(".PP\n.B {}\n", escape(line)));
            continue;
        }
        if let Some(usage) = line.strip_prefix("Usage: ") {
            out.push_str(&format!(".PP\nUsage: \\fB{}\\fR\n", escape(usage)));
            continue;
        }
        if section.is_none() {
            out.push_str(&format!(".PP\n{}\n", escape(line)));
            continue;
        }
        // An entry: its term and description on one line, two spaces or more apart, or the
        // description on the following lines, indented further.
        let entry = line.trim();
        let (term, mut description) = match entry.split_once("  ") {
            Some((term, description)) => (term.to_owned(), description.trim().to_owned()),
            None => (entry.to_owned(), String::new()),
        };
        let indent = line.len() - line.trim_start().len();
        while let Some(next) = lines.peek() {
            let next_indent = next.len() - next.trim_start().len();
            if next.trim().is_empty() || next_indent <= indent {
                break;
            }
            description = format!("{description} {}", next.trim()).trim().to_owned();
            lines.next();
        }
        if section.as_deref() == Some("Commands") && term != "help" {
            subcommands.push(term.clone());
        }
        out.push_str(&format!(".TP\n\\fB{}\\fR\n{}\n", escape(&term), escape(&description)));
    }
    for sub in subcommands {
        path.push(sub);
        help_sections(binary, path, out)?;
        path.pop();
    }
    Ok(())
}

/// Text made safe for roff: backslashes, minus signs (so that options copy as typed) and a
/// leading dot or quote.
fn escape(text: &str) -> String {
    let text = text.replace('\\', "\\e").replace('-', "\\-");
    if text.starts_with('.') || text.starts_with('\'') { format!("\\&{text}") } else { text }
}

/// Runs a command and returns its standard output, failing with its standard error.
fn capture(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed with {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

// ---------------------------------------------------------------------------------------------
// The install check.

/// Measured phases of the check, printed at its end.
#[derive(Default)]
struct Timings(Vec<(&'static str, Duration)>);

impl Timings {
    fn time<T>(&mut self, name: &'static str, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
        let started = Instant::now();
        let result = f();
        self.0.push((name, started.elapsed()));
        result
    }
}

/// Purges the package when dropped while armed: after a failure, the machine is left as the
/// check found it.
struct Installed {
    armed: bool,
}

impl Drop for Installed {
    fn drop(&mut self) {
        if self.armed {
            eprintln!("dist check: failed; purging the package to leave the machine as it was");
            let _ = dpkg(&["--purge", PACKAGE]);
        }
    }
}

fn check(deb: &Path, work: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut timings = Timings::default();
    refuse_if_present()?;
    if work.exists() {
        fs::remove_dir_all(work)?;
    }
    fs::create_dir_all(work)?;

    let mut installed = Installed { armed: true };
    timings.time("dpkg -i", || dpkg(&["--install", &deb.display().to_string()]))?;
    let user = timings.time("files and user", check_installed)?;
    timings.time("settings examples", || check_setting_examples(work))?;
    let unit = timings.time("unit", check_unit)?;
    let notes = timings.time("run and send", || run_service(&unit, &user, work))?;
    timings.time("upgrade", || check_upgrade(deb, &user))?;
    timings.time("dpkg -r and -P", remove)?;
    installed.armed = false;

    eprintln!("dist check: passed in {:.1} s", started.elapsed().as_secs_f64());
    for (name, took) in &timings.0 {
        eprintln!("  {name:<18} {:>6.2} s", took.as_secs_f64());
    }
    for note in &notes {
        eprintln!("  {note}");
    }
    Ok(())
}

/// Refuses to touch a machine where the package, or a user or data folder of its name, is
/// there already: the check removes all of these at its end.
fn refuse_if_present() -> anyhow::Result<()> {
    let status = Command::new("dpkg-query").args(["-W", "-f=${db:Status-Status}", PACKAGE]).output()?;
    let state = String::from_utf8_lossy(&status.stdout).trim().to_owned();
    if status.status.success() && !state.is_empty() && state != "not-installed" {
        bail!(
            "a {PACKAGE} package is on this machine already (state: {state}); the check installs and purges its own, \
             so remove that one first with `dpkg --purge {PACKAGE}` if it may go"
        );
    }
    if getent("passwd", PACKAGE)?.is_some() || getent("group", PACKAGE)?.is_some() {
        bail!("a user or group named {PACKAGE} exists already; the check would delete it when it purges the package");
    }
    if Path::new(STATE).exists() || Path::new("/etc/switchboard").exists() {
        bail!("{STATE} or /etc/switchboard exists already; the check would delete it when it purges the package");
    }
    Ok(())
}

/// Runs dpkg with `args`, printing the command and what it said; fails if it fails.
fn dpkg(args: &[&str]) -> anyhow::Result<()> {
    eprintln!("$ dpkg {}", args.join(" "));
    let out: Output = Command::new("dpkg")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()
        .context("running dpkg")?;
    for line in String::from_utf8_lossy(&out.stdout).lines().chain(String::from_utf8_lossy(&out.stderr).lines()) {
        eprintln!("  {line}");
    }
    ensure!(out.status.success(), "dpkg {} failed with {}", args.join(" "), out.status);
    Ok(())
}

/// A `getent` entry's fields, or `None` when there is none.
fn getent(database: &str, key: &str) -> anyhow::Result<Option<Vec<String>>> {
    let out = Command::new("getent").args([database, key]).output().context("running getent")?;
    match out.status.code() {
        Some(0) => Ok(Some(String::from_utf8_lossy(&out.stdout).trim().split(':').map(str::to_owned).collect())),
        Some(2) => Ok(None),
        _ => bail!("getent {database} {key} failed: {}", String::from_utf8_lossy(&out.stderr)),
    }
}

/// The service's user, as installed.
struct User {
    uid: u32,
    gid: u32,
}

fn expect_file(path: &str, mode: u32, uid: u32, gid: u32) -> anyhow::Result<()> {
    let meta = fs::metadata(path).with_context(|| format!("{path} is not installed"))?;
    let found = (meta.mode() & 0o7777, meta.uid(), meta.gid());
    ensure!(
        found == (mode, uid, gid),
        "{path}: mode {:o} owner {}:{}, expected {mode:o} {uid}:{gid}",
        found.0,
        found.1,
        found.2
    );
    Ok(())
}

/// The installed files, their modes and owners, the service's user and group, and dpkg's own
/// verification of the files against the package's checksums.
fn check_installed() -> anyhow::Result<User> {
    let passwd = getent("passwd", PACKAGE)?.context("postinst did not create the user switchboard")?;
    let (uid, gid): (u32, u32) = (passwd[2].parse()?, passwd[3].parse()?);
    ensure!(uid < 1000, "the user switchboard is not a system user (uid {uid})");
    ensure!(passwd[5] == STATE, "the user switchboard's home is {}, not {STATE}", passwd[5]);
    ensure!(passwd[6].ends_with("nologin"), "the user switchboard may log in (shell {})", passwd[6]);
    let group = getent("group", PACKAGE)?.context("postinst did not create the group switchboard")?;
    ensure!(group[2] == gid.to_string(), "the user switchboard's group is not the group switchboard");
    expect_file(BINARY, 0o755, 0, 0)?;
    expect_file(UNIT, 0o644, 0, 0)?;
    expect_file(CONFIG, 0o640, 0, gid)?;
    expect_file(STATE, 0o700, uid, gid)?;
    for doc in ["copyright", "README.Debian", "README.md.gz", "OPERATIONS.md.gz", "API.md.gz"] {
        expect_file(&format!("/usr/share/doc/switchboard/{doc}"), 0o644, 0, 0)?;
    }
    expect_file("/usr/share/man/man1/switchboard.1.gz", 0o644, 0, 0)?;
    let verify = capture(Command::new("dpkg").args(["--verify", PACKAGE]))?;
    ensure!(verify.trim().is_empty(), "dpkg --verify found changed files: {verify}");
    if Command::new("man").arg("--version").output().is_ok() {
        let out = Command::new("man")
            .args(["--warnings", "-l", "/usr/share/man/man1/switchboard.1.gz"])
            .env("MANWIDTH", "100")
            .env("PAGER", "cat")
            .env_remove("MAN_KEEP_FORMATTING")
            .output()?;
        let page = String::from_utf8_lossy(&out.stdout);
        let warnings = String::from_utf8_lossy(&out.stderr);
        ensure!(out.status.success() && warnings.trim().is_empty(), "man switchboard: {warnings}");
        ensure!(
            page.contains("switchboard admin accounts create") && page.contains("--config"),
            "the man page lacks the commands' help"
        );
        eprintln!("dist check: the man page renders ({} lines) without warnings", page.lines().count());
    }
    eprintln!("dist check: files, modes, user switchboard ({uid}:{gid}) and dpkg --verify are right");
    Ok(User { uid, gid })
}

/// Every setting the default settings file shows commented out (`#key = value`, and the
/// example tables) is one the server knows, with a value it accepts: the file with every such
/// line uncommented passes `switchboard migrate` (which reads and checks the settings) on a
/// scratch database.
fn check_setting_examples(work: &Path) -> anyhow::Result<()> {
    let text = fs::read_to_string(CONFIG)?;
    let mut examples = 0;
    let uncommented: Vec<String> = text
        .lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest) if rest.starts_with('[') || rest.split_once('=').is_some_and(|(k, _)| is_key(k.trim())) => {
                examples += 1;
                rest.to_owned()
            }
            _ => line.to_owned(),
        })
        .collect();
    ensure!(examples > 10, "the settings file shows only {examples} example settings");
    let file = work.join("all-examples.toml");
    fs::write(&file, uncommented.join("\n"))?;
    let data = work.join("examples-data");
    let out = Command::new(BINARY)
        .arg("migrate")
        .arg("--config")
        .arg(&file)
        .arg("--data-dir")
        .arg(&data)
        .arg("--database-url")
        .arg(format!("sqlite://{}", data.join("examples.db").display()))
        .env_clear()
        .env("PATH", SERVICE_PATH)
        .env("SMSC_PASSWORD", "secret")
        .output()?;
    ensure!(
        out.status.success(),
        "the settings file's examples, uncommented, are refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("dist check: the {examples} commented example settings are all known and valid");
    Ok(())
}

fn is_key(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// A systemd unit file: its assignments in order, as `(section, key, value)`.
struct Unit(Vec<(String, String, String)>);

impl Unit {
    fn parse(text: &str) -> anyhow::Result<Self> {
        let mut entries = Vec::new();
        let mut section = String::new();
        let mut pending = String::new();
        for line in text.lines() {
            let line = line.trim();
            if pending.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with(';')) {
                continue;
            }
            if let Some(continued) = line.strip_suffix('\\') {
                pending.push_str(continued);
                pending.push(' ');
                continue;
            }
            let line = std::mem::take(&mut pending) + line;
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_owned();
            } else if let Some((key, value)) = line.split_once('=') {
                ensure!(!section.is_empty(), "unit: `{line}` comes before any section");
                entries.push((section.clone(), key.trim().to_owned(), value.trim().to_owned()));
            } else {
                bail!("unit: cannot read `{line}`");
            }
        }
        Ok(Unit(entries))
    }

    /// The value in force: the last assignment.
    fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.0.iter().rev().find(|(s, k, _)| s == section && k == key).map(|(_, _, v)| v.as_str())
    }

    /// A list setting: every assignment adds to it, an empty one empties it.
    fn list(&self, key: &str) -> Vec<String> {
        let mut list = Vec::new();
        for (_, _, value) in self.0.iter().filter(|(s, k, _)| s == "Service" && k == key) {
            if value.is_empty() {
                list.clear();
            }
            list.extend(value.split_whitespace().map(str::to_owned));
        }
        list
    }

    /// The assignments of a list setting that are in force: an empty one drops those before.
    fn assignments(&self, key: &str) -> Vec<String> {
        let mut lines = Vec::new();
        for (_, _, value) in self.0.iter().filter(|(s, k, _)| s == "Service" && k == key) {
            if value.is_empty() {
                lines.clear();
            } else {
                lines.push(value.clone());
            }
        }
        lines
    }

    fn service(&self, key: &str) -> Option<&str> {
        self.get("Service", key)
    }

    fn yes(&self, key: &str) -> bool {
        self.service(key).is_some_and(|v| matches!(v, "yes" | "true" | "on" | "1"))
    }
}

/// Splits a command line as systemd does for the plain forms: words apart by white space,
/// double or single quotes around a word with spaces. Variables and the special prefixes
/// (`-`, `@`, `+`, `!`, `:`) are refused rather than misread.
fn split_command(line: &str) -> anyhow::Result<Vec<String>> {
    ensure!(!line.contains('$') && !line.contains('\\'), "cannot read `{line}`: variables and escapes are not handled");
    ensure!(!line.starts_with(['-', '@', '+', '!', ':']), "cannot read `{line}`: its prefix is not handled");
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote = None;
    let mut in_word = false;
    for c in line.chars() {
        match (quote, c) {
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (_, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    ensure!(quote.is_none(), "cannot read `{line}`: a quote is not closed");
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Checks that the unit has what the package promises, and has systemd verify it when
/// `systemd-analyze` is installed.
fn check_unit() -> anyhow::Result<Unit> {
    let unit = Unit::parse(&fs::read_to_string(UNIT)?)?;
    for (key, want) in [
        ("User", PACKAGE),
        ("Group", PACKAGE),
        ("StateDirectory", PACKAGE),
        ("ConfigurationDirectory", PACKAGE),
        ("ProtectSystem", "strict"),
        ("WorkingDirectory", STATE),
    ] {
        ensure!(unit.service(key) == Some(want), "the unit's {key} is {:?}, not {want}", unit.service(key));
    }
    for key in ["NoNewPrivileges", "PrivateTmp", "ProtectHome", "PrivateDevices"] {
        ensure!(unit.yes(key), "the unit does not set {key}=yes");
    }
    let nofile: u64 = unit.service("LimitNOFILE").context("the unit sets no LimitNOFILE")?.parse()?;
    ensure!(nofile >= 65_536, "the unit's LimitNOFILE={nofile} is not raised");
    let exec = split_command(unit.service("ExecStart").context("the unit has no ExecStart")?)?;
    let program = fs::metadata(&exec[0]).with_context(|| format!("ExecStart's {} is not there", exec[0]))?;
    ensure!(program.mode() & 0o111 != 0, "ExecStart's {} is not executable", exec[0]);
    ensure!(
        exec[1..] == ["serve", "--config", CONFIG],
        "ExecStart runs `{}`, not the server on {CONFIG}",
        exec.join(" ")
    );
    ensure!(
        unit.get("Install", "WantedBy") == Some("multi-user.target"),
        "the unit is not wanted by multi-user.target"
    );

    if Command::new("systemd-analyze").arg("--version").output().is_ok() {
        let out = Command::new("systemd-analyze").args(["verify", UNIT]).output()?;
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        // verify exits 0 on warnings such as an unknown key: any word from it is a failure.
        ensure!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify {UNIT}: {said}");
        let security =
            capture(Command::new("systemd-analyze").args(["security", "--offline=true", "--no-pager", UNIT]))?;
        let overall = security
            .lines()
            .find(|l| l.contains("Overall exposure level"))
            .context("systemd-analyze security printed no overall exposure")?;
        let exposure: f64 = overall
            .split(':')
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .context("cannot read the overall exposure")?
            .parse()?;
        ensure!(exposure <= MAX_EXPOSURE, "the unit's exposure is {exposure}, above {MAX_EXPOSURE}: {overall}");
        eprintln!("dist check: systemd-analyze verify is silent; {}", overall.trim_start_matches(['→', ' ']));
    } else {
        eprintln!("dist check: systemd-analyze is not installed: the unit was checked by reading it only");
    }
    Ok(unit)
}

/// The server as the unit runs it, stopped (and killed if need be) when dropped.
struct Service {
    child: Child,
    pid: u32,
    log: PathBuf,
}

impl Service {
    fn log_tail(&self) -> String {
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// SIGTERM, then waits for it to stop; returns whether it stopped cleanly.
    fn stop(&mut self) -> anyhow::Result<bool> {
        signal("TERM", self.pid)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.success());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("the server did not stop within 30 s of SIGTERM:\n{}", self.log_tail())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = signal("KILL", self.pid);
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn signal(name: &str, pid: u32) -> anyhow::Result<()> {
    let status = Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status()?;
    ensure!(status.success(), "kill -{name} {pid} failed");
    Ok(())
}

/// Runs the unit's `ExecStart` line as the unit would, on a free port, drives it through the
/// installed admin command line and over HTTP, and stops it. Returns what it found, for the
/// summary.
fn run_service(unit: &Unit, user: &User, work: &Path) -> anyhow::Result<Vec<String>> {
    let mut notes = Vec::new();
    let exec = split_command(unit.service("ExecStart").context("no ExecStart")?)?;
    let port = crate::bench::free_port()?;
    let url = format!("http://127.0.0.1:{port}");
    let mut env: BTreeMap<String, String> = BTreeMap::from([
        ("PATH".into(), SERVICE_PATH.into()),
        ("HOME".into(), STATE.into()),
        ("USER".into(), PACKAGE.into()),
        ("LOGNAME".into(), PACKAGE.into()),
        ("SHELL".into(), "/usr/sbin/nologin".into()),
    ]);
    ensure!(unit.service("EnvironmentFile").is_none(), "the unit's EnvironmentFile is not handled by the check");
    for assignments in unit.0.iter().filter(|(s, k, _)| s == "Service" && k == "Environment").map(|(_, _, v)| v) {
        for assignment in split_command(assignments)? {
            let (key, value) = assignment.split_once('=').context("an Environment= word without =")?;
            env.insert(key.into(), value.into());
        }
    }
    // The one difference from the unit: a free port, so that the check runs beside anything.
    env.insert("SWITCHBOARD_LISTEN".into(), format!("127.0.0.1:{port}"));

    let sandbox = sandbox_script(unit, work)?;
    let sandboxed = Command::new("unshare")
        .args(["--mount", "--uts", "--propagation", "private", "--", "true"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !sandboxed && std::env::var_os("CI").is_some() {
        bail!("unshare cannot make a mount namespace here, so the unit's file-system protections cannot be emulated");
    }
    let traced = Command::new("strace").arg("-V").output().is_ok_and(|o| o.status.success());
    let trace = work.join("server.trace");
    let mut cmd = if traced {
        let mut c = Command::new("strace");
        c.args(["-f", "-qq", "-o"]).arg(&trace).arg("--");
        c.arg(if sandboxed { "unshare" } else { "sh" });
        c
    } else {
        Command::new(if sandboxed { "unshare" } else { "sh" })
    };
    if sandboxed {
        cmd.args(["--mount", "--uts", "--propagation", "private", "--", "sh"]);
    }
    cmd.arg("-c").arg(if sandboxed { &sandbox.full } else { &sandbox.plain }).arg("sh").args(&exec);
    // One file for both, as the journal takes both.
    let log = work.join("server.log");
    let file = fs::File::create(&log)?;
    cmd.env_clear().envs(&env).stdin(Stdio::null()).stdout(file.try_clone()?).stderr(file);
    let child = cmd.spawn().context("starting the unit's ExecStart")?;
    let pid = if traced { traced_child(child.id())? } else { child.id() };
    let mut service = Service { child, pid, log };
    notes.push(format!(
        "ran `{}` as {PACKAGE} ({}:{}) with {}",
        exec.join(" "),
        user.uid,
        user.gid,
        sandbox.process.join(", ")
    ));
    notes.push(if sandboxed {
        format!("in a mount namespace emulating {}", sandbox.namespace.join(", "))
    } else {
        format!("without a mount namespace (unshare is not usable here): {} not emulated", sandbox.namespace.join(", "))
    });

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let _in_runtime = rt.enter();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let started = Instant::now();
    loop {
        if let Some(status) = service.child.try_wait()? {
            bail!("the server exited with {status} before it was ready:\n{}", service.log_tail());
        }
        let ready = rt.block_on(http.get(format!("{url}/readyz")).send()).is_ok_and(|r| r.status().is_success());
        if ready {
            break;
        }
        ensure!(
            started.elapsed() < Duration::from_secs(60),
            "the server was not ready in 60 s:\n{}",
            service.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    notes.push(format!("ready in {:.2} s", started.elapsed().as_secs_f64()));
    // The process that answers is the one to inspect and signal: the wrappers before it
    // (strace's child, the namespace's shell) may have forked rather than exec'd it.
    service.pid = server_process(user.uid)?;

    let limits = fs::read_to_string(format!("/proc/{}/limits", service.pid))?;
    let nofile = limits.lines().find(|l| l.starts_with("Max open files")).unwrap_or_default().to_owned();
    if let Some(want) = &sandbox.nofile {
        ensure!(nofile.split_whitespace().filter(|w| w == want).count() == 2, "the server's open-file limit: {nofile}");
    }
    let status = fs::read_to_string(format!("/proc/{}/status", service.pid))?;
    let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).unwrap_or_default().trim().to_owned();
    ensure!(
        field("Uid:").split_whitespace().all(|id| id == user.uid.to_string()),
        "the server runs as uid {}",
        field("Uid:")
    );
    ensure!(
        field("NoNewPrivs:") == "1" && field("CapBnd:").trim_start_matches('0').is_empty(),
        "the server kept privileges"
    );

    for (file, mode) in [("operator-token", 0o600), ("server-keys", 0o600), ("switchboard.db", 0o600)] {
        expect_file(&format!("{STATE}/{file}"), mode, user.uid, user.gid)?;
    }
    let token = fs::read_to_string(format!("{STATE}/operator-token"))?;
    ensure!(token.trim().len() >= 16, "the generated operator token is too short");

    // The operator's steps, through the installed admin command line (as root, which reads
    // the token from the data folder), then a client's send over HTTP.
    let account = admin(&url, &["accounts", "create", "--name", "Package check"])?;
    let account = account["id"].as_str().context("no account id")?.to_owned();
    let key = admin(&url, &["keys", "create", &account, "--name", "package-check"])?;
    let (key_id, secret) = (
        key["id"].as_str().context("no key id")?.to_owned(),
        key["secret"].as_str().context("no key secret")?.to_owned(),
    );
    admin(&url, &["senders", "add", &account, "+18005559876"])?;
    let entry = admin(&url, &["credits", "top-up", &account, "--sms", "10", "--reference", "package check"])?;
    ensure!(entry["smsBalance"] == 10, "the top-up did not credit 10 SMS: {entry}");

    let sent = rt.block_on(async {
        let response = http
            .post(format!("{url}/api/v1/messaging/message"))
            .basic_auth(&key_id, Some(&secret))
            .json(&serde_json::json!({
                "to": "+18005551234",
                "from": "+18005559876",
                "body": "Installed from the Debian package"
            }))
            .send()
            .await?;
        let status = response.status();
        let message: serde_json::Value = response.json().await?;
        ensure!(status == reqwest::StatusCode::CREATED, "the send was answered {status}: {message}");
        let id = message["id"].as_str().context("the message has no id")?.to_owned();
        let read: serde_json::Value = http
            .get(format!("{url}/api/v1/messaging/message/{id}"))
            .basic_auth(&key_id, Some(&secret))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        ensure!(matches!(read["status"].as_str(), Some("queued" | "sent")), "the message read back: {read}");
        anyhow::Ok(id)
    });
    let id = sent.with_context(|| format!("sending through the installed server; its log:\n{}", service.log_tail()))?;
    // TextingLine shows a delivered message as `sent`; the admin API shows its own status,
    // which the simulator's receipt makes `delivered` a second after the send.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let message = admin(&url, &["messages", "get", &id])?;
        match message["status"].as_str() {
            Some("delivered") => break,
            Some("accepted" | "queued" | "sent") if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            _ => bail!("the message did not reach delivered: {message}\n{}", service.log_tail()),
        }
    }
    notes.push(format!("sent {id} with a key made by the installed admin command line; it reached delivered"));

    let stopped = Instant::now();
    let clean = service.stop()?;
    ensure!(clean, "the server did not exit cleanly on SIGTERM:\n{}", service.log_tail());
    let log = fs::read_to_string(&service.log)?;
    ensure!(log.contains("stopped"), "the server's log does not say it stopped:\n{}", service.log_tail());
    for level in ["ERROR", "WARN"] {
        ensure!(!log.contains(level), "the server logged a {level} line:\n{log}");
    }
    notes.push(format!("stopped cleanly {:.2} s after SIGTERM", stopped.elapsed().as_secs_f64()));

    if traced {
        notes.extend(check_trace(unit, &fs::read_to_string(&trace)?, sandboxed)?);
    } else {
        notes.push("strace is not installed: the system calls were not checked against SystemCallFilter".into());
    }
    Ok(notes)
}

/// The pid of the installed server running as `uid`: the one process whose executable is
/// [`BINARY`] and whose user is the package's.
fn server_process(uid: u32) -> anyhow::Result<u32> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc")? {
        let Ok(pid) = entry?.file_name().to_string_lossy().parse::<u32>() else { continue };
        let exe = fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let owner = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|ids| ids.split_whitespace().next());
        if exe == Path::new(BINARY) && owner == Some(uid.to_string().as_str()) {
            found.push(pid);
        }
    }
    match found.as_slice() {
        [pid] => Ok(*pid),
        _ => bail!("expected one server process running as uid {uid}, found {found:?}"),
    }
}

/// The pid of the process strace (pid `strace`) started: the one that execs the server.
fn traced_child(strace: u32) -> anyhow::Result<u32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let children = fs::read_to_string(format!("/proc/{strace}/task/{strace}/children")).unwrap_or_default();
        if let Some(pid) = children.split_whitespace().next() {
            return Ok(pid.parse()?);
        }
        ensure!(Instant::now() < deadline, "strace started no process");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the installed admin command line against the server and returns its JSON answer.
fn admin(url: &str, args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let out = Command::new(BINARY)
        .args(["admin", "--server", url, "--data-dir", STATE])
        .args(args)
        .env_clear()
        .env("PATH", SERVICE_PATH)
        .output()?;
    ensure!(
        out.status.success(),
        "switchboard admin {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).with_context(|| format!("switchboard admin {}: not JSON", args.join(" ")))
}

/// The shell scripts that start the server as the unit would: `full` in a mount namespace
/// that emulates the unit's file-system settings, `plain` without one. Both end by exec-ing
/// their arguments (the `ExecStart` words) with the unit's working folder, umask, open-file
/// limit, user and group, no new privileges and no capabilities.
struct Sandbox {
    full: String,
    plain: String,
    /// What of the unit `full` applies in its mount and host-name namespaces.
    namespace: Vec<String>,
    /// What of the unit both apply to the process.
    process: Vec<String>,
    /// The open-file limit it gives the server.
    nofile: Option<String>,
}

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn sandbox_script(unit: &Unit, work: &Path) -> anyhow::Result<Sandbox> {
    let (mut namespace, mut process): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
    let mut s = String::from("set -eu\n");
    // The mount points of this machine (the namespace starts as a copy of them).
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
    let mut mounts: Vec<String> = mountinfo.lines().filter_map(|l| l.split(' ').nth(4)).map(unescape_mount).collect();
    mounts.sort();
    mounts.dedup();
    let under = |path: &str, top: &str| path == top || path.starts_with(&format!("{top}/"));
    if unit.service("ProtectSystem") == Some("strict") {
        namespace.push("ProtectSystem=strict".into());
        let tunables = unit.yes("ProtectKernelTunables");
        for m in &mounts {
            if under(m, "/proc") || under(m, "/dev") || (!tunables && under(m, "/sys")) {
                continue;
            }
            // `bind,ro` changes this namespace's view of the mount, never the file system.
            s.push_str(&format!("mount -n -o remount,bind,ro -- {} 2>/dev/null || true\n", quote(m)));
        }
        if tunables {
            namespace.push("ProtectKernelTunables".into());
            s.push_str("mount -n --bind /proc/sys /proc/sys\nmount -n -o remount,bind,ro /proc/sys\n");
        }
        if tunables && unit.yes("ProtectControlGroups") {
            namespace.push("ProtectControlGroups".into());
        }
    }
    if unit.yes("ProtectHome") {
        namespace.push("ProtectHome".into());
        for home in ["/home", "/root", "/run/user"].iter().filter(|p| Path::new(p).is_dir()) {
            s.push_str(&format!("mount -n -t tmpfs -o ro,mode=000,nosuid,nodev,noexec tmpfs {home}\n"));
        }
    }
    if unit.yes("PrivateTmp") {
        namespace.push("PrivateTmp".into());
        s.push_str("mount -n -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp\n");
        s.push_str("mount -n -t tmpfs -o mode=1777,nosuid,nodev tmpfs /var/tmp\n");
    }
    if unit.yes("PrivateDevices") {
        ensure!(unit.yes("PrivateTmp"), "the check emulates PrivateDevices only with PrivateTmp");
        namespace.push("PrivateDevices".into());
        s.push_str(
            "mkdir /tmp/.dev && mount -n -t tmpfs -o mode=755,nosuid,noexec tmpfs /tmp/.dev\n\
             for d in null zero full random urandom tty; do\n  \
               [ -e /dev/$d ] || continue\n  \
               : > /tmp/.dev/$d\n  \
               mount -n --bind /dev/$d /tmp/.dev/$d\n\
             done\n\
             mkdir /tmp/.dev/shm && mount -n -t tmpfs -o mode=1777,nosuid,nodev,noexec tmpfs /tmp/.dev/shm\n\
             ln -s /proc/self/fd /tmp/.dev/fd\n\
             ln -s /proc/self/fd/0 /tmp/.dev/stdin\n\
             ln -s /proc/self/fd/1 /tmp/.dev/stdout\n\
             ln -s /proc/self/fd/2 /tmp/.dev/stderr\n\
             mount -n --move /tmp/.dev /dev\n",
        );
    }
    if let Some(state) = unit.service("StateDirectory") {
        namespace.push("StateDirectory".into());
        for dir in state.split_whitespace() {
            let path = quote(&format!("/var/lib/{dir}"));
            s.push_str(&format!("mount -n --bind {path} {path}\nmount -n -o remount,bind,rw {path}\n"));
        }
    }
    if unit.yes("ProtectHostname") {
        namespace.push("ProtectHostname".into());
    }
    if unit.yes("PrivateMounts") {
        namespace.push("PrivateMounts".into());
    }
    // The sandbox holds: nothing outside the state folder takes a write, even from root.
    if unit.service("ProtectSystem") == Some("strict") {
        let here = work.display().to_string();
        for dir in ["/", "/etc", "/usr", "/var", "/var/lib", "/var/log", "/opt", "/srv", here.as_str()] {
            s.push_str(&format!(
                "if [ -d {d} ] && ( : > {p} ) 2>/dev/null; then rm -f {p}; echo \"sandbox: {d} is writable\" >&2; exit 70; fi\n",
                d = quote(dir),
                p = quote(&format!("{}/.switchboard-sandbox-probe", dir.trim_end_matches('/'))),
            ));
        }
    }
    let mut tail = String::new();
    if let Some(dir) = unit.service("WorkingDirectory") {
        process.push("WorkingDirectory".into());
        tail.push_str(&format!("cd {}\n", quote(dir)));
    }
    if let Some(umask) = unit.service("UMask") {
        process.push("UMask".into());
        tail.push_str(&format!("umask {umask}\n"));
    }
    let mut exec = String::from("exec");
    let mut nofile = None;
    if let Some(limit) = unit.service("LimitNOFILE") {
        // Raising the hard limit needs CAP_SYS_RESOURCE, which systemd has and a container
        // may not: then the server runs with the highest limit it can have here.
        let raised = Command::new("prlimit").arg(format!("--nofile={limit}:{limit}")).args(["--", "true"]).output();
        let applied = if raised.is_ok_and(|o| o.status.success()) {
            process.push("LimitNOFILE".into());
            limit.to_owned()
        } else {
            let limits = fs::read_to_string("/proc/self/limits")?;
            let hard = limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(4))
                .context("cannot read this process's open-file limit")?
                .to_owned();
            process.push(format!(
                "LimitNOFILE={hard}, this machine's hard limit, as raising it to {limit} needs CAP_SYS_RESOURCE"
            ));
            hard
        };
        exec.push_str(&format!(" prlimit --nofile={applied}:{applied} --"));
        nofile = Some(applied);
    }
    let user = unit.service("User").context("the unit has no User")?;
    let group = unit.service("Group").unwrap_or(user);
    exec.push_str(&format!(" setpriv --reuid={} --regid={} --init-groups", quote(user), quote(group)));
    process.push("User and Group".into());
    if unit.yes("NoNewPrivileges") {
        process.push("NoNewPrivileges".into());
        exec.push_str(" --no-new-privs");
    }
    if unit.list("CapabilityBoundingSet").is_empty() && unit.service("CapabilityBoundingSet").is_some() {
        process.push("CapabilityBoundingSet=".into());
        exec.push_str(" --bounding-set=-all --inh-caps=-all");
    }
    exec.push_str(" -- \"$@\"\n");
    tail.push_str(&exec);
    Ok(Sandbox { full: s + &tail, plain: format!("set -eu\n{tail}"), namespace, process, nofile })
}

/// A mount point as `/proc/self/mountinfo` writes it, with `\040` for a space.
fn unescape_mount(field: &str) -> String {
    let mut out = String::new();
    let mut rest = field;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 4).and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &rest[at + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Checks the server's system calls (those after it was exec'd) against the unit's
/// `SystemCallFilter` (expanded by `systemd-analyze syscall-filter`), its socket address
/// families against `RestrictAddressFamilies`, its memory mappings against
/// `MemoryDenyWriteExecute`, and the paths it wrote against the state folder.
fn check_trace(unit: &Unit, trace: &str, sandboxed: bool) -> anyhow::Result<Vec<String>> {
    let mut notes = Vec::new();
    let mut lines = trace.lines();
    lines
        .by_ref()
        .find(|l| l.contains(&format!("execve(\"{BINARY}\"")) && l.trim_end().ends_with("= 0"))
        .context("the trace does not show the server's exec")?;
    let mut calls = BTreeSet::new();
    let mut families = BTreeSet::new();
    let mut write_exec = Vec::new();
    let mut writes = BTreeSet::new();
    let working = unit.service("WorkingDirectory").unwrap_or("/");
    for line in lines {
        let Some((_pid, rest)) = line.split_once(char::is_whitespace) else { continue };
        let rest = rest.trim_start();
        let Some((name, args)) = rest.split_once('(') else { continue };
        if !is_key(name) {
            continue; // `<... resumed>`, signals, exits
        }
        calls.insert(name.to_owned());
        match name {
            "socket" | "socketpair" => {
                families.insert(args.split(',').next().unwrap_or_default().trim().to_owned());
            }
            "mmap" if args.contains("PROT_WRITE") && args.contains("PROT_EXEC") => write_exec.push(line.to_owned()),
            "mprotect" | "pkey_mprotect" if args.contains("PROT_EXEC") => write_exec.push(line.to_owned()),
            _ => {}
        }
        let writing = match name {
            "open" | "openat" | "openat2" => {
                ["O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC"].iter().any(|f| args.contains(f))
            }
            "creat" | "mkdir" | "mkdirat" | "rename" | "renameat" | "renameat2" | "unlink" | "unlinkat" | "rmdir"
            | "link" | "linkat" | "symlink" | "symlinkat" | "truncate" | "chmod" | "fchmodat" | "chown"
            | "fchownat" => true,
            _ => false,
        };
        let succeeded = line.rsplit_once(" = ").is_some_and(|(_, ret)| !ret.starts_with('-'));
        if writing && succeeded {
            for path in args.split('"').skip(1).step_by(2) {
                let relative_to_cwd = !path.starts_with('/') && (args.starts_with("AT_FDCWD") || !name.ends_with("at"));
                writes.insert(if relative_to_cwd { format!("{working}/{path}") } else { path.to_owned() });
            }
        }
    }

    let mut allowed_dirs = vec![STATE, "/dev", "/proc"];
    if unit.yes("PrivateTmp") {
        allowed_dirs.extend(["/tmp", "/var/tmp"]);
    }
    let inside =
        |p: &str| allowed_dirs.iter().any(|d| p == *d || p.strip_prefix(d).is_some_and(|r| r.starts_with('/')));
    let outside: Vec<&String> = writes.iter().filter(|p| p.starts_with('/') && !inside(p)).collect();
    ensure!(outside.is_empty(), "the server wrote outside {STATE}: {outside:?}");
    notes.push(format!(
        "it wrote only under {STATE}{} ({} paths)",
        if sandboxed { ", the rest being read-only" } else { "" },
        writes.len()
    ));

    let allowed_families = unit.list("RestrictAddressFamilies");
    if !allowed_families.is_empty() {
        ensure!(
            !allowed_families[0].starts_with('~'),
            "the check handles an allow list of RestrictAddressFamilies only"
        );
        let denied: Vec<&String> = families.iter().filter(|f| !allowed_families.contains(f)).collect();
        ensure!(denied.is_empty(), "the server opened sockets of families RestrictAddressFamilies denies: {denied:?}");
        notes.push(format!("its socket families {families:?} are all in RestrictAddressFamilies"));
    }
    if unit.yes("MemoryDenyWriteExecute") {
        ensure!(write_exec.is_empty(), "MemoryDenyWriteExecute would refuse: {write_exec:?}");
        notes.push("no mapping was both writable and executable (MemoryDenyWriteExecute)".into());
    }

    let filter = unit.assignments("SystemCallFilter");
    if filter.is_empty() {
        return Ok(notes);
    }
    let Ok(out) = Command::new("systemd-analyze").arg("syscall-filter").output() else {
        notes.push("systemd-analyze is not installed: SystemCallFilter's groups could not be expanded".into());
        return Ok(notes);
    };
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if line.starts_with('@') {
            current = Some(line.trim().to_owned());
        } else if line.starts_with('#') {
            current = None;
        } else if let Some(group) = &current {
            let member = line.trim();
            if !member.is_empty() && !member.starts_with('#') {
                groups.entry(group.clone()).or_default().push(member.to_owned());
            }
        }
    }
    let expand = |words: &str| -> anyhow::Result<BTreeSet<String>> {
        let mut calls = BTreeSet::new();
        let mut pending: Vec<String> =
            words.split_whitespace().map(|w| w.split(':').next().unwrap_or_default().to_owned()).collect();
        let mut seen = BTreeSet::new();
        while let Some(item) = pending.pop() {
            if item.starts_with('@') {
                if seen.insert(item.clone()) {
                    let members = groups.get(&item).with_context(|| format!("systemd does not know {item}"))?;
                    pending.extend(members.iter().cloned());
                }
            } else {
                calls.insert(item);
            }
        }
        Ok(calls)
    };
    // As systemd reads it: the first assignment makes an allow list (or, with `~`, a deny
    // list); each later one adds to it, or with `~` takes from it.
    let mut allowed: Option<BTreeSet<String>> = None;
    let mut denied = BTreeSet::new();
    for (i, line) in filter.iter().enumerate() {
        match line.strip_prefix('~') {
            Some(words) => {
                let set = expand(words)?;
                match &mut allowed {
                    Some(allowed) => allowed.retain(|c| !set.contains(c)),
                    None => denied.extend(set),
                }
            }
            None => {
                let set = expand(line)?;
                match &mut allowed {
                    _ if i == 0 => allowed = Some(set),
                    Some(allowed) => allowed.extend(set),
                    None => denied.retain(|c| !set.contains(c)),
                }
            }
        }
    }
    let refused: Vec<&String> = calls
        .iter()
        .filter(|c| match &allowed {
            Some(allowed) => !allowed.contains(*c),
            None => denied.contains(*c),
        })
        .collect();
    let filter = filter.iter().map(|f| format!("SystemCallFilter={f}")).collect::<Vec<_>>().join(" ");
    ensure!(refused.is_empty(), "the server made system calls that {filter} refuses: {refused:?}");
    notes.push(format!("its {} distinct system calls are all allowed by {filter}", calls.len()));
    Ok(notes)
}

/// Installing the same package again, as an upgrade does: the administrator's change to the
/// settings stays, their mode and group stay, and the data stays.
fn check_upgrade(deb: &Path, user: &User) -> anyhow::Result<()> {
    let token = fs::read_to_string(format!("{STATE}/operator-token"))?;
    let mut settings = fs::read_to_string(CONFIG)?;
    settings.push_str("# changed by the administrator\n");
    fs::write(CONFIG, &settings)?;
    dpkg(&["--install", &deb.display().to_string()])?;
    ensure!(fs::read_to_string(CONFIG)? == settings, "the upgrade replaced the administrator's settings");
    expect_file(CONFIG, 0o640, 0, user.gid)?;
    expect_file(STATE, 0o700, user.uid, user.gid)?;
    ensure!(fs::read_to_string(format!("{STATE}/operator-token"))? == token, "the upgrade changed the data folder");
    let passwd = getent("passwd", PACKAGE)?.context("the upgrade removed the user switchboard")?;
    ensure!(passwd[2] == user.uid.to_string(), "the upgrade made the user switchboard again");
    eprintln!("dist check: installing over itself kept the changed settings, their mode, the data and the user");
    Ok(())
}

/// `dpkg -r`, then `dpkg -P`, checking what each leaves.
fn remove() -> anyhow::Result<()> {
    dpkg(&["--remove", PACKAGE])?;
    ensure!(!Path::new(BINARY).exists(), "dpkg -r left {BINARY}");
    ensure!(Path::new(CONFIG).exists(), "dpkg -r removed the settings, which only a purge removes");
    ensure!(getent("passwd", PACKAGE)?.is_some(), "dpkg -r removed the user, which only a purge removes");
    dpkg(&["--purge", PACKAGE])?;
    for path in [CONFIG, "/etc/switchboard", STATE, UNIT] {
        ensure!(!Path::new(path).exists(), "dpkg -P left {path}");
    }
    ensure!(getent("passwd", PACKAGE)?.is_none(), "dpkg -P left the user switchboard");
    ensure!(getent("group", PACKAGE)?.is_none(), "dpkg -P left the group switchboard");
    let status = Command::new("dpkg-query").args(["-W", "-f=${db:Status-Status}", PACKAGE]).output()?;
    let state = String::from_utf8_lossy(&status.stdout).trim().to_owned();
    ensure!(state.is_empty() || state == "not-installed", "dpkg still knows the package after the purge: {state}");
    eprintln!("dist check: removed, then purged: no binary, settings, data, user or group is left");
    Ok(())
}
