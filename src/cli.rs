//! The command line, as clap derive types. Nothing here does work; `main` dispatches.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

/// strata: a daemonless Dockerfile compiler with a content-addressed layer cache.
#[derive(Debug, Parser)]
#[command(name = "strata", version, about, propagate_version = true)]
pub struct Cli {
    /// Where strata keeps its store and state [default: /var/lib/strata as root,
    /// $XDG_DATA_HOME/strata otherwise]
    #[arg(long, global = true, env = "STRATA_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Tools for looking inside strata's front end
    Debug {
        #[command(subcommand)]
        command: DebugCommand,
    },
    /// Manage images
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// List images (= `image ls`)
    Images(ImagesArgs),
    /// Import a root filesystem tarball as a one-layer image (= `image import`)
    Import(ImportArgs),
    /// Load images from a docker-archive or OCI archive (= `image load`)
    Load(LoadArgs),
    /// Save images to a docker-archive or OCI archive (= `image save`)
    Save(SaveArgs),
    /// Give an image another name (= `image tag`)
    Tag(TagArgs),
    /// Remove images (= `image rm`)
    Rmi(RmiArgs),
    /// Show low-level information on images as JSON (= `image inspect`)
    Inspect(InspectArgs),
    /// Show the history of an image (= `image history`)
    History(HistoryArgs),
    /// Manage the store
    System {
        #[command(subcommand)]
        command: SystemCommand,
    },
    /// Build an image from a Dockerfile
    Build(Box<BuildArgs>),
    /// Manage the build cache
    Builder {
        #[command(subcommand)]
        command: BuilderCommand,
    },
    /// Internal: the sandbox's init process (started by strata itself)
    #[command(name = "__sandbox-init", hide = true)]
    SandboxInit {
        /// The OCI bundle (holding config.json)
        #[arg(value_name = "BUNDLE")]
        bundle: PathBuf,
    },
}

/// `strata builder ...`.
#[derive(Debug, Subcommand)]
pub enum BuilderCommand {
    /// Remove build cache records and cache mounts
    Prune(BuilderPruneArgs),
}

/// `strata builder prune`.
#[derive(Debug, Args)]
pub struct BuilderPruneArgs {
    /// Remove all build cache, not only what no image uses
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
    /// Keep cache younger than this (`until=24h`)
    #[arg(long, value_name = "FILTER")]
    pub filter: Vec<String>,
    /// Keep the most recently used cache up to this size (`512MB`, `2GB`)
    #[arg(long, value_name = "SIZE")]
    pub keep_storage: Option<String>,
}

/// `strata build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Name and optionally a tag (`name:tag`)
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    pub tags: Vec<String>,
    /// The Dockerfile (`-` reads it from stdin) [default: CONTEXT/Dockerfile]
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<String>,
    /// Set a build-time variable (`K=V`, or `K` to take it from the environment)
    #[arg(long = "build-arg", value_name = "K[=V]")]
    pub build_args: Vec<String>,
    /// The stage to build
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// Do not use the cache
    #[arg(long)]
    pub no_cache: bool,
    /// Do not use the cache for these stages
    #[arg(long = "no-cache-filter", value_name = "STAGE")]
    pub no_cache_filter: Vec<String>,
    /// The network of RUN steps
    #[arg(long, value_enum, default_value_t = NetworkArg::Default)]
    pub network: NetworkArg,
    /// How to show progress
    #[arg(long, value_enum, default_value_t = ProgressArg::Auto)]
    pub progress: ProgressArg,
    /// Print only the image ID
    #[arg(short, long)]
    pub quiet: bool,
    /// Write the image ID to this file
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,
    /// Set a label on the image (`K=V`)
    #[arg(long = "label", value_name = "K=V")]
    pub labels: Vec<String>,
    /// A secret for `RUN --mount=type=secret` (`id=ID,src=PATH` or `id=ID,env=VAR`)
    #[arg(long = "secret", value_name = "SPEC")]
    pub secrets: Vec<String>,
    /// Allow an entitlement (`security.insecure`, `network.host`)
    #[arg(long = "allow", value_name = "ENTITLEMENT")]
    pub allow: Vec<String>,
    /// Where to write the result (`type=image|oci|docker|tar|local,dest=PATH`)
    #[arg(short, long = "output", value_name = "SPEC")]
    pub outputs: Vec<String>,
    /// The target platform
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
    /// The build context: a directory, or `-` for a tar on stdin
    #[arg(value_name = "CONTEXT")]
    pub context: String,
}

/// `strata build --network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NetworkArg {
    Default,
    None,
    Host,
}

/// `strata build --progress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressArg {
    Auto,
    Plain,
    Tty,
    Quiet,
    Json,
}

/// `strata image ...`: the same commands as the top-level shortcuts.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// List images
    #[command(visible_alias = "list")]
    Ls(ImagesArgs),
    /// Import a root filesystem tarball as a one-layer image
    Import(ImportArgs),
    /// Load images from a docker-archive or OCI archive
    Load(LoadArgs),
    /// Save images to a docker-archive or OCI archive
    Save(SaveArgs),
    /// Give an image another name
    Tag(TagArgs),
    /// Remove images
    #[command(visible_alias = "remove")]
    Rm(RmiArgs),
    /// Show low-level information on images as JSON
    Inspect(InspectArgs),
    /// Show the history of an image
    History(HistoryArgs),
}

/// `strata system ...`.
#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Show disk usage: images, layers and the bytes saved by deduplication
    Df(DfArgs),
    /// Remove unreferenced blobs, layers, objects and temporary files
    Prune(PruneArgs),
    /// Re-hash every blob and object and check every ref, manifest, config and layer
    Verify,
}

/// `strata images [REPOSITORY[:TAG]]`.
#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Show all images (strata has no intermediate images: the same as without)
    #[arg(short, long)]
    pub all: bool,

    /// Show the digests
    #[arg(long)]
    pub digests: bool,

    /// Filter the output (`dangling=true|false`, `reference=PATTERN`, `label=K[=V]`,
    /// `before=IMAGE`, `since=IMAGE`); repeatable
    #[arg(short, long = "filter", value_name = "FILTER", value_parser = parse_filter)]
    pub filter: Vec<(String, String)>,

    /// Format the output: `table`, `table TEMPLATE`, `json` or a Go-style template
    /// (`{{.ID}} {{.Repository}} {{.Tag}} {{.Digest}} {{.Size}} {{.CreatedSince}} {{.CreatedAt}}`)
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,

    /// Don't truncate the output (full image IDs)
    #[arg(long)]
    pub no_trunc: bool,

    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,

    /// Only list images whose name matches (a `reference` filter)
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub repository: Option<String>,
}

/// `strata import TARBALL|- [NAME[:TAG]]`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Apply a Dockerfile instruction to the image config (CMD, ENTRYPOINT, ENV, EXPOSE,
    /// LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR); repeatable
    #[arg(short, long = "change", value_name = "INSTRUCTION")]
    pub change: Vec<String>,

    /// The commit message (history comment) of the layer
    #[arg(short, long, value_name = "MESSAGE")]
    pub message: Option<String>,

    /// The root filesystem tar (plain, gzip, zstd or xz), or `-` for stdin
    #[arg(value_name = "TARBALL|-")]
    pub source: PathBuf,

    /// The name to give the image
    #[arg(value_name = "NAME[:TAG]")]
    pub reference: Option<String>,
}

/// `strata load [-i FILE]`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Read from this archive file instead of stdin
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<PathBuf>,

    /// Suppress the progress output (the loaded names are still printed)
    #[arg(short, long)]
    pub quiet: bool,
}

/// `strata save [-o FILE] IMAGE...`.
#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Write to this file instead of stdout
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// The archive format
    #[arg(long, value_enum, default_value_t = SaveFormat::Docker)]
    pub format: SaveFormat,

    /// Compress the layers of an OCI archive (default gzip; docker-archive layers are
    /// uncompressed tar)
    #[arg(long, value_enum, value_name = "COMPRESSION")]
    pub compression: Option<SaveCompression>,

    /// The images to save (names, IDs or digests)
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<String>,
}

/// The archive formats `save` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SaveFormat {
    /// docker-archive, what `docker save` writes and `docker load`/`podman load` read
    Docker,
    /// OCI image layout as a tar (oci-archive), what skopeo and umoci read
    Oci,
}

/// Layer compressions `save` can apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SaveCompression {
    /// tar+gzip (parallel, pigz-style)
    Gzip,
    /// tar+zstd (multithreaded)
    Zstd,
}

/// `strata tag SOURCE TARGET`.
#[derive(Debug, Args)]
pub struct TagArgs {
    /// The existing image (name, ID or digest)
    #[arg(value_name = "SOURCE_IMAGE[:TAG]")]
    pub source: String,

    /// The new name
    #[arg(value_name = "TARGET_IMAGE[:TAG]")]
    pub target: String,
}

/// `strata rmi [-f] IMAGE...`.
#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Remove the image even when it has several tags (by ID: untag them all)
    #[arg(short, long)]
    pub force: bool,

    /// The images to remove (names, short IDs or digests)
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<String>,
}

/// `strata inspect IMAGE...`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Format the output with a Go-style template (`{{.Id}}`, `{{json .Config}}`)
    #[arg(short, long, value_name = "FORMAT")]
    pub format: Option<String>,

    /// The images to inspect
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<String>,
}

/// `strata history IMAGE`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Format the output: `table`, `table TEMPLATE`, `json` or a Go-style template
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,

    /// Print sizes and dates in human readable form (`--human=false` for bytes and RFC 3339)
    #[arg(
        short = 'H',
        long,
        value_name = "BOOL",
        default_value_t = true,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        action = ArgAction::Set
    )]
    pub human: bool,

    /// Don't truncate the output
    #[arg(long)]
    pub no_trunc: bool,

    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,

    /// The image
    #[arg(value_name = "IMAGE")]
    pub image: String,
}

/// `strata system df`.
#[derive(Debug, Args)]
pub struct DfArgs {
    /// Show per-image detail
    #[arg(short, long)]
    pub verbose: bool,

    /// Format the output: `table`, `table TEMPLATE`, `json` or a Go-style template
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
}

/// `strata system prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove all images without a container, not only dangling data (strata has no
    /// containers yet: every image)
    #[arg(short, long)]
    pub all: bool,

    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Parse a Dockerfile and print its instructions
    Parse(ParseArgs),
    /// Expand one word the way a Dockerfile instruction does (no field splitting)
    Expand(ExpandArgs),
    /// Print the store root in effect (after --root, STRATA_ROOT and the default)
    Root,
    /// Run a command in the RUN sandbox on an overlay of the given directories
    Sandbox(SandboxArgs),
    /// Set up a container network (`--network`, `-p`) for a running process's namespace,
    /// until stdin closes (for tests)
    #[command(hide = true)]
    Net(NetArgs),
}

/// `strata debug net --pid PID [--network MODE] [-p SPEC]... [--expose PORT]... [-P]`.
#[derive(Debug, Args)]
pub struct NetArgs {
    /// The host pid of a process in the target network namespace
    #[arg(long, value_name = "PID")]
    pub pid: i32,
    /// none, host or bridge
    #[arg(long, default_value = "bridge", value_name = "MODE")]
    pub network: String,
    /// Publish a port (`[IP:][HOST:]CONTAINER[/PROTO]`)
    #[arg(short = 'p', long = "publish", value_name = "SPEC")]
    pub publish: Vec<String>,
    /// A port the "image" exposes (`8080/tcp`), for `-P`
    #[arg(long, value_name = "PORT")]
    pub expose: Vec<String>,
    /// Publish every exposed port on a free host port
    #[arg(short = 'P', long)]
    pub publish_all: bool,
}

/// `strata debug sandbox ... -- CMD ARG...`.
#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// A lower dir of the overlay, top first (repeatable; the mount point stubs go below)
    #[arg(long, value_name = "DIR")]
    pub lower: Vec<PathBuf>,

    /// The overlay's upper dir (receives what the command writes)
    #[arg(long, value_name = "DIR")]
    pub upper: PathBuf,

    /// The overlay's work dir (empty, on the upper dir's filesystem)
    #[arg(long, value_name = "DIR")]
    pub work: PathBuf,

    /// `none` (loopback only) or `host`
    #[arg(long, value_enum, default_value_t = SandboxNetwork::Host)]
    pub network: SandboxNetwork,

    /// The numeric user and group to run as
    #[arg(long, value_name = "UID:GID", value_parser = parse_uid_gid, default_value = "0:0")]
    pub user: (u32, u32),

    /// The working directory inside the sandbox (created if missing)
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub cwd: String,

    /// An environment variable of the command (repeatable)
    #[arg(long = "env", short = 'e', value_name = "K=V")]
    pub env: Vec<String>,

    /// Bind mount a host path (repeatable)
    #[arg(long, value_name = "SRC:DST[:ro]")]
    pub bind: Vec<String>,

    /// Mount a tmpfs (repeatable)
    #[arg(long, value_name = "DST")]
    pub tmpfs: Vec<String>,

    /// The command and its arguments
    #[arg(value_name = "CMD", required = true, last = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SandboxNetwork {
    /// A new network namespace with only `lo`
    None,
    /// The host's network
    Host,
}

fn parse_uid_gid(s: &str) -> Result<(u32, u32), String> {
    let (u, g) = s.split_once(':').unwrap_or((s, s));
    let num = |x: &str| x.parse::<u32>().map_err(|_| format!("not a number: {x:?}"));
    Ok((num(u)?, num(g)?))
}

#[derive(Debug, Args)]
pub struct ParseArgs {
    /// Output format: `buildkit` prints the raw parse exactly as BuildKit's AST dump does;
    /// `json` prints the typed instructions with their positions
    #[arg(long, value_enum, default_value_t = ParseFormat::Buildkit)]
    pub format: ParseFormat,

    /// The Dockerfile to parse, or `-` for stdin
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ParseFormat {
    /// BuildKit's `parser.Parse(...).AST.Dump()`, one instruction per line
    Buildkit,
    /// Typed instructions with positions, as JSON
    Json,
}

#[derive(Debug, Args)]
pub struct ExpandArgs {
    /// A variable visible to the expansion (repeatable; the last one wins)
    #[arg(long = "env", short = 'e', value_name = "K=V", value_parser = parse_key_value)]
    pub env: Vec<(String, String)>,

    /// The escape character, as the `# escape=` directive sets it
    #[arg(long, default_value_t = '\\', value_parser = parse_escape)]
    pub escape: char,

    /// The word to expand (put `--` before it if it starts with `-`)
    #[arg(value_name = "WORD", allow_hyphen_values = false)]
    pub word: String,
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some(("", _)) => Err(format!("invalid variable {s:?}: empty name")),
        Some((k, v)) => Ok((k.to_string(), v.to_string())),
        None => Err(format!("invalid variable {s:?}: expected K=V")),
    }
}

/// A `--filter` value: `name=value` (docker's "bad format of filter" otherwise).
fn parse_filter(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => {
            Ok((k.trim().to_ascii_lowercase(), v.trim().to_string()))
        }
        _ => Err(format!("bad format of filter (expected name=value): {s:?}")),
    }
}

fn parse_escape(s: &str) -> Result<char, String> {
    match s {
        "\\" => Ok('\\'),
        "`" => Ok('`'),
        _ => Err(format!("invalid escape character {s:?}: use \\ or `")),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn key_value_parsing() {
        assert_eq!(
            parse_key_value("A=b=c"),
            Ok(("A".to_string(), "b=c".to_string()))
        );
        assert_eq!(parse_key_value("A="), Ok(("A".to_string(), String::new())));
        assert!(parse_key_value("=x").is_err());
        assert!(parse_key_value("novalue").is_err());
    }

    #[test]
    fn filter_parsing() {
        assert_eq!(
            parse_filter("reference=busy*"),
            Ok(("reference".to_string(), "busy*".to_string()))
        );
        assert_eq!(
            parse_filter("label=a=b"),
            Ok(("label".to_string(), "a=b".to_string()))
        );
        assert!(parse_filter("dangling").is_err());
        assert!(parse_filter("=x").is_err());
    }

    #[test]
    fn image_commands_parse() {
        let cli = Cli::try_parse_from([
            "strata",
            "images",
            "-a",
            "-q",
            "--digests",
            "--no-trunc",
            "-f",
            "dangling=true",
            "--filter",
            "label=x",
            "--format",
            "{{.ID}}",
            "busybox",
        ])
        .expect("parses");
        let Command::Images(a) = cli.command else {
            panic!("not images: {cli:?}");
        };
        assert!(a.all && a.quiet && a.digests && a.no_trunc);
        assert_eq!(a.filter.len(), 2);
        assert_eq!(a.repository.as_deref(), Some("busybox"));

        let cli = Cli::try_parse_from([
            "strata",
            "import",
            "-c",
            "CMD [\"sh\"]",
            "--change",
            "ENV A=b",
            "-m",
            "msg",
            "-",
            "x:y",
        ])
        .expect("parses");
        let Command::Import(a) = cli.command else {
            panic!("not import: {cli:?}");
        };
        assert_eq!(a.change, ["CMD [\"sh\"]", "ENV A=b"]);
        assert_eq!(a.source, PathBuf::from("-"));
        assert_eq!(a.reference.as_deref(), Some("x:y"));

        let cli = Cli::try_parse_from([
            "strata",
            "save",
            "--format",
            "oci",
            "--compression",
            "zstd",
            "-o",
            "f",
            "a",
            "b",
        ])
        .expect("parses");
        let Command::Save(a) = cli.command else {
            panic!("not save: {cli:?}");
        };
        assert_eq!(a.format, SaveFormat::Oci);
        assert_eq!(a.compression, Some(SaveCompression::Zstd));
        assert_eq!(a.images, ["a", "b"]);

        let cli = Cli::try_parse_from(["strata", "history", "--human=false", "x"]).expect("ok");
        let Command::History(a) = cli.command else {
            panic!("not history: {cli:?}");
        };
        assert!(!a.human);

        for ok in [
            &["strata", "image", "ls"][..],
            &["strata", "image", "list"],
            &["strata", "image", "rm", "-f", "x"],
            &["strata", "rmi", "x", "y"],
            &["strata", "tag", "a", "b"],
            &["strata", "inspect", "-f", "{{.Id}}", "a"],
            &["strata", "load", "-q", "-i", "f"],
            &["strata", "system", "df", "-v"],
            &["strata", "system", "prune", "-a", "-f"],
            &["strata", "system", "verify"],
        ] {
            assert!(Cli::try_parse_from(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            &["strata", "save"][..],
            &["strata", "rmi"],
            &["strata", "tag", "a"],
            &["strata", "images", "-f", "nofilter"],
            &["strata", "save", "--format", "tar", "x"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sandbox_command_parses() {
        let cli = Cli::try_parse_from([
            "strata",
            "debug",
            "sandbox",
            "--lower",
            "a",
            "--upper",
            "u",
            "--work",
            "w",
            "--network",
            "none",
            "--user",
            "1000:100",
            "--bind",
            "/x:/y:ro",
            "--",
            "sh",
            "-c",
            "true",
        ])
        .expect("parses");
        let Command::Debug {
            command: DebugCommand::Sandbox(a),
        } = cli.command
        else {
            panic!("not debug sandbox: {cli:?}");
        };
        assert_eq!(a.user, (1000, 100));
        assert_eq!(a.network, SandboxNetwork::None);
        assert_eq!(a.command, ["sh", "-c", "true"]);
        assert_eq!(parse_uid_gid("7"), Ok((7, 7)));
        assert!(parse_uid_gid("x:1").is_err());
        let cli = Cli::try_parse_from(["strata", "__sandbox-init", "/b"]).expect("parses");
        assert!(matches!(cli.command, Command::SandboxInit { .. }));
    }

    #[test]
    fn escape_parsing() {
        assert_eq!(parse_escape("`"), Ok('`'));
        assert!(parse_escape("x").is_err());
    }
}
