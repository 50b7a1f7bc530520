//! `cargo xtask dist [--profile NAME]`: the Debian package of the server.
//!
//! The package is built with Debian's own `dpkg-deb --root-owner-group --build` from a staging
//! tree written under `target/dist/build/`, out of the sources in `packaging/debian/`: the
//! binary (`/usr/bin/switchboard`), the systemd unit, the commented default settings (a
//! conffile), the maintainer scripts, a man page made from the packaged binary's own `--help`,
//! and the documents. `--profile dev` packages the debug build instead of the release one,
//! which is quicker to build.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail, ensure};

const PACKAGE: &str = "switchboard";
/// The packaging sources, relative to the workspace root.
const SOURCES: &str = "packaging/debian";

struct Options {
    profile: String,
}

fn options(args: &[String]) -> anyhow::Result<Options> {
    let mut o = Options { profile: "release".into() };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--profile" => o.profile = args.next().context("--profile needs a name, such as dev or release")?.clone(),
            other => match other.strip_prefix("--profile=") {
                Some(profile) => o.profile = profile.to_owned(),
                None => bail!("unknown option {other}: cargo xtask dist [--profile NAME]"),
            },
        }
    }
    Ok(o)
}

pub(crate) fn run(root: &Path, args: &[String]) -> anyhow::Result<()> {
    let o = options(args)?;
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
    let deb = package(root, &binary, o.profile == "release", &target.join("dist"))?;
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
    Ok(())
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
    // xz, Debian's default, for the release package; a debug build (about 90 MiB) is for trials
    // on a test machine, and xz takes minutes over it where gzip -1 takes seconds.
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
