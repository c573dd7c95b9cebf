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
    /// Manage volumes
    Volume {
        #[command(subcommand)]
        command: VolumeCommand,
    },
    /// Create a new image from a container's changes
    Commit(CommitArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(CpArgs),
    /// Create and run a new container from an image
    Run(Box<RunArgs>),
    /// Create a new container (without starting it)
    Create(Box<RunArgs>),
    /// Start stopped containers
    Start(StartArgs),
    /// Stop running containers (stop signal, then SIGKILL after the timeout)
    Stop(StopArgs),
    /// Restart containers
    Restart(StopArgs),
    /// Send a signal to running containers
    Kill(KillArgs),
    /// Block until containers stop, then print their exit codes
    Wait(ContainersArgs),
    /// Remove containers
    Rm(RmArgs),
    /// List containers
    Ps(PsArgs),
    /// Fetch the logs of a container
    Logs(LogsArgs),
    /// Attach to a running container's output
    Attach(AttachArgs),
    /// Run a command in a running container
    Exec(ExecArgs),
    /// Internal: the per-container supervisor (started by strata itself)
    #[command(name = "__supervise", hide = true)]
    Supervise {
        /// Report readiness on this fd
        #[arg(long, value_name = "FD")]
        ready_fd: Option<i32>,
        /// The container's full ID
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Internal: the sandbox's init process (started by strata itself)
    #[command(name = "__sandbox-init", hide = true)]
    SandboxInit {
        /// The OCI bundle (holding config.json)
        #[arg(value_name = "BUNDLE")]
        bundle: PathBuf,
    },
    /// Download an image from a registry (= `image pull`)
    Pull(PullArgs),
    /// Upload an image to a registry (= `image push`)
    Push(PushArgs),
    /// Log in to a registry
    Login(LoginArgs),
    /// Log out from a registry
    Logout(LogoutArgs),
    /// Search a registry for images
    Search(SearchArgs),
    /// Internal: starts a process in a running container's namespaces (started by strata)
    #[command(name = "__sandbox-exec", hide = true)]
    SandboxExec {
        /// The host pid of the container's pid 1
        #[arg(value_name = "PID")]
        pid: i32,
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
    /// An SSH agent for `RUN --mount=type=ssh`: `ID` (the agent at $SSH_AUTH_SOCK), `ID=SOCKET`,
    /// or `ID=KEY[,KEY...]` (key files, served by an ssh-agent of the build's own)
    #[arg(long = "ssh", value_name = "ID[=SOCKET|KEY[,KEY]]")]
    pub ssh: Vec<String>,
    /// Allow an entitlement (`security.insecure`, `network.host`)
    #[arg(long = "allow", value_name = "ENTITLEMENT")]
    pub allow: Vec<String>,
    /// Where to write the result (`type=image|oci|docker|tar|local,dest=PATH`)
    #[arg(short, long = "output", value_name = "SPEC")]
    pub outputs: Vec<String>,
    /// The target platform
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
    /// Always look for a newer version of the FROM images
    #[arg(long)]
    pub pull: bool,
    /// Allow plain http (and unverified https) for this registry (HOST[:PORT])
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
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
    /// Remove all images without a container, not only dangling ones
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
    Sandbox(Box<SandboxArgs>),
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

    /// Add a Linux capability, docker style (`NET_ADMIN`, `cap_sys_admin`, `ALL`)
    #[arg(long, value_name = "CAP")]
    pub cap_add: Vec<String>,

    /// Drop a Linux capability, docker style
    #[arg(long, value_name = "CAP")]
    pub cap_drop: Vec<String>,

    /// Every capability, no seccomp, no masked paths (docker's --privileged)
    #[arg(long)]
    pub privileged: bool,

    /// Memory limit (`64m`, `1g`, bytes), swap included
    #[arg(long, short = 'm', value_name = "SIZE")]
    pub memory: Option<String>,

    /// CPU quota in cpus (`0.5`)
    #[arg(long, value_name = "N")]
    pub cpus: Option<f64>,

    /// Maximum number of processes (0 or less: unlimited)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub pids_limit: Option<i64>,

    /// Mount the root filesystem read-only
    #[arg(long)]
    pub read_only: bool,

    /// Run the command on a new pty (its output is copied to stdout)
    #[arg(long, short = 't')]
    pub tty: bool,

    /// After the start, run `sh -c SCRIPT` in the container's namespaces (exec), then kill the
    /// container; exits with the exec'd script's code
    #[arg(long, value_name = "SCRIPT")]
    pub exec_sh: Option<String>,

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

/// Registry options shared by pull, push, login and search.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// Allow plain http and unverified https for this registry (HOST[:PORT]); localhost
    /// always may use http
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
    /// Use the CA certificates (`*.crt`) and client certificate (`NAME.cert` + `NAME.key`)
    /// in DIR instead of /etc/containers/certs.d/HOST and /etc/docker/certs.d/HOST
    #[arg(long = "cert-dir", value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
}

/// `strata pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// The platform to pull from a multi-platform image
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Print only the image name
    #[arg(short, long)]
    pub quiet: bool,
    /// Layers downloaded at once
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub jobs: usize,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// NAME[:TAG|@DIGEST]
    #[arg(value_name = "NAME[:TAG|@DIGEST]")]
    pub reference: String,
}

/// `strata push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// Print only the digest
    #[arg(short, long)]
    pub quiet: bool,
    /// Upload blobs larger than this many bytes in chunks of that size (0: automatic, 32 MiB)
    #[arg(long, default_value_t = 0, value_name = "BYTES")]
    pub chunk_size: u64,
    /// Blobs uploaded at once
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub jobs: usize,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// NAME[:TAG]
    #[arg(value_name = "NAME[:TAG]")]
    pub reference: String,
}

/// `strata login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// User name
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password (prefer --password-stdin)
    #[arg(short, long)]
    pub password: Option<String>,
    /// Read the password from stdin
    #[arg(long)]
    pub password_stdin: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// The registry [default: Docker Hub]
    #[arg(value_name = "SERVER")]
    pub server: Option<String>,
}

/// `strata logout`.
#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The registry [default: Docker Hub]
    #[arg(value_name = "SERVER")]
    pub server: Option<String>,
}

/// `strata search`.
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Most results shown
    #[arg(long, default_value_t = 25)]
    pub limit: usize,
    /// Do not truncate descriptions
    #[arg(long)]
    pub no_trunc: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// `WORD` (Docker Hub) or `HOST[:PORT]/WORD` (that registry's catalog)
    #[arg(value_name = "TERM")]
    pub term: String,
}

/// `strata run` / `strata create`: docker's flags.
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Print help
    #[arg(long, action = ArgAction::Help)]
    pub help: Option<bool>,
    /// Remove the container when it exits
    #[arg(long)]
    pub rm: bool,
    /// Run in the background and print the container ID
    #[arg(short, long)]
    pub detach: bool,
    /// Keep stdin open (forwarded to the container)
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-terminal
    #[arg(short, long)]
    pub tty: bool,
    /// The container's name
    #[arg(long)]
    pub name: Option<String>,
    /// Set an environment variable (`K=V`, or `K` to pass strata's own)
    #[arg(short, long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Read environment variables from a file
    #[arg(long, value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Bind a host path or a volume (`SRC:DST[:ro]`)
    #[arg(short, long = "volume", value_name = "SRC:DST[:OPTS]")]
    pub volume: Vec<String>,
    /// Attach a filesystem mount (`type=bind|volume|tmpfs,...`)
    #[arg(long, value_name = "MOUNT")]
    pub mount: Vec<String>,
    /// Mount a tmpfs (`DST[:OPTS]`)
    #[arg(long, value_name = "DST")]
    pub tmpfs: Vec<String>,
    /// Mount the volumes of another container
    #[arg(long, value_name = "CONTAINER")]
    pub volumes_from: Vec<String>,
    /// The working directory inside the container
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// The user (`USER[:GROUP]`, names or numbers)
    #[arg(short, long, value_name = "USER")]
    pub user: Option<String>,
    /// Override the image's ENTRYPOINT
    #[arg(long, value_name = "CMD")]
    pub entrypoint: Option<String>,
    /// The container's host name
    #[arg(short = 'h', long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// Network mode: bridge, none or host
    #[arg(long, alias = "net", value_name = "MODE", default_value = "bridge")]
    pub network: String,
    /// Publish a port (`[IP:]HOST:CONTAINER[/udp]`)
    #[arg(short, long = "publish", value_name = "PORT")]
    pub publish: Vec<String>,
    /// Publish every exposed port to a free host port
    #[arg(short = 'P', long)]
    pub publish_all: bool,
    /// Memory limit (`64m`, `1g`)
    #[arg(short, long, value_name = "BYTES")]
    pub memory: Option<String>,
    /// Number of CPUs (`1.5`)
    #[arg(long, value_name = "N")]
    pub cpus: Option<String>,
    /// Maximum number of processes
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Mount the root filesystem read-only
    #[arg(long)]
    pub read_only: bool,
    /// Run an init as pid 1 that reaps zombies and forwards signals
    #[arg(long)]
    pub init: bool,
    /// The signal that stops the container
    #[arg(long, value_name = "SIGNAL")]
    pub stop_signal: Option<String>,
    /// Seconds to wait for the stop signal before SIGKILL
    #[arg(long, value_name = "SECONDS")]
    pub stop_timeout: Option<u32>,
    /// Add a Linux capability
    #[arg(long, value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a Linux capability
    #[arg(long, value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Give the container every capability and device
    #[arg(long)]
    pub privileged: bool,
    /// Set a label (`K=V`)
    #[arg(short, long, value_name = "K=V")]
    pub label: Vec<String>,
    /// The image
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// The command and its arguments
    #[arg(
        value_name = "COMMAND",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

/// Containers by name or ID.
#[derive(Debug, Args)]
pub struct ContainersArgs {
    /// Container names or IDs
    #[arg(value_name = "CONTAINER", required = true)]
    pub containers: Vec<String>,
}

/// `strata start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// Attach to the output and exit with the container's code
    #[arg(short, long)]
    pub attach: bool,
    /// Container names or IDs
    #[arg(value_name = "CONTAINER", required = true)]
    pub containers: Vec<String>,
}

/// `strata stop` / `strata restart`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait before killing
    #[arg(short, long = "time", alias = "timeout", value_name = "SECONDS")]
    pub time: Option<u32>,
    /// Container names or IDs
    #[arg(value_name = "CONTAINER", required = true)]
    pub containers: Vec<String>,
}

/// `strata kill`.
#[derive(Debug, Args)]
pub struct KillArgs {
    /// The signal to send
    #[arg(short, long, value_name = "SIGNAL", default_value = "KILL")]
    pub signal: String,
    /// Container names or IDs
    #[arg(value_name = "CONTAINER", required = true)]
    pub containers: Vec<String>,
}

/// `strata rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Kill and remove a running container
    #[arg(short, long)]
    pub force: bool,
    /// Also remove the container's anonymous volumes
    #[arg(short, long)]
    pub volumes: bool,
    /// Container names or IDs
    #[arg(value_name = "CONTAINER", required = true)]
    pub containers: Vec<String>,
}

/// `strata ps`.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all containers (not only running ones)
    #[arg(short, long)]
    pub all: bool,
    /// Only IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Only the latest created container
    #[arg(short, long)]
    pub latest: bool,
    /// Don't truncate
    #[arg(long)]
    pub no_trunc: bool,
    /// Filter (`status=running`, `name=web`, `id=...`, `label=K[=V]`); repeatable
    #[arg(short, long = "filter", value_name = "FILTER", value_parser = parse_filter)]
    pub filter: Vec<(String, String)>,
    /// Go-template output format
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
}

/// `strata logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Follow the output
    #[arg(short, long)]
    pub follow: bool,
    /// Number of lines from the end (`all` for every line)
    #[arg(short = 'n', long, value_name = "N")]
    pub tail: Option<String>,
    /// Show timestamps
    #[arg(short, long)]
    pub timestamps: bool,
    /// Container name or ID
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

/// `strata exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Keep stdin open
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-terminal
    #[arg(short, long)]
    pub tty: bool,
    /// Set an environment variable
    #[arg(short, long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// The user (`USER[:GROUP]`)
    #[arg(short, long, value_name = "USER")]
    pub user: Option<String>,
    /// The working directory
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// Container name or ID
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    /// The command and its arguments
    #[arg(
        value_name = "COMMAND",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

/// `strata attach`.
#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Container name or ID
    #[arg(value_name = "CONTAINER")]
    pub container: String,
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
    fn run_stops_at_the_image_like_docker() {
        let cli = Cli::try_parse_from([
            "strata", "run", "--rm", "-h", "box", "-e", "A=1", "-p", "80:80", "img", "ls", "-l",
            "--rm",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        assert!(args.rm);
        assert_eq!(args.hostname.as_deref(), Some("box"));
        assert_eq!(args.image, "img");
        assert_eq!(args.command, ["ls", "-l", "--rm"]);
        assert_eq!(args.network, "bridge");
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

/// `strata volume ...`.
#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume
    Create(VolumeCreateArgs),
    /// List volumes
    #[command(alias = "list")]
    Ls(VolumeLsArgs),
    /// Display detailed information on one or more volumes
    Inspect(VolumeInspectArgs),
    /// Remove one or more volumes
    #[command(alias = "remove")]
    Rm(VolumeRmArgs),
    /// Remove unused local volumes
    Prune(VolumePruneArgs),
}

/// `strata volume create [-d local] [--label K=V]... [NAME]`.
#[derive(Debug, Args)]
pub struct VolumeCreateArgs {
    /// Volume driver name (only "local")
    #[arg(short, long, default_value = "local")]
    pub driver: String,

    /// Set metadata for a volume (KEY=VALUE)
    #[arg(long = "label", value_name = "LABEL")]
    pub labels: Vec<String>,

    /// The volume's name (random when omitted)
    #[arg(value_name = "VOLUME")]
    pub name: Option<String>,
}

/// `strata volume ls [-q] [-f FILTER]... [--format F]`.
#[derive(Debug, Args)]
pub struct VolumeLsArgs {
    /// Only display volume names
    #[arg(short, long)]
    pub quiet: bool,

    /// Filter output (dangling=true|false, name=..., label=KEY[=VALUE], driver=local)
    #[arg(short, long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,

    /// Format output using a Go-style template (`{{.Name}}`)
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
}

/// `strata volume inspect [-f F] VOLUME...`.
#[derive(Debug, Args)]
pub struct VolumeInspectArgs {
    /// Format the output using a Go-style template
    #[arg(short, long, value_name = "FORMAT")]
    pub format: Option<String>,

    /// The volumes
    #[arg(value_name = "VOLUME", required = true)]
    pub volumes: Vec<String>,
}

/// `strata volume rm [-f] VOLUME...`.
#[derive(Debug, Args)]
pub struct VolumeRmArgs {
    /// Don't fail on volumes that don't exist (volumes in use are still refused)
    #[arg(short, long)]
    pub force: bool,

    /// The volumes
    #[arg(value_name = "VOLUME", required = true)]
    pub volumes: Vec<String>,
}

/// `strata volume prune [-a] [-f] [--filter label=...]`.
#[derive(Debug, Args)]
pub struct VolumePruneArgs {
    /// Remove all unused volumes, not just anonymous ones
    #[arg(short, long)]
    pub all: bool,

    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,

    /// Provide filter values (label=KEY[=VALUE])
    #[arg(long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
}

/// `strata commit [-a AUTHOR] [-c INSTR]... [-m MSG] CONTAINER [IMAGE]`.
#[derive(Debug, Args)]
pub struct CommitArgs {
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short, long)]
    pub author: Option<String>,

    /// Apply a Dockerfile instruction to the created image (CMD, ENTRYPOINT, ENV, EXPOSE,
    /// LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR)
    #[arg(short, long = "change", value_name = "INSTR")]
    pub changes: Vec<String>,

    /// Commit message
    #[arg(short, long)]
    pub message: Option<String>,

    /// Pause the container during commit (accepted; strata commits the upper dir as it is)
    #[arg(
        short,
        long,
        action = ArgAction::Set,
        default_value_t = true,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub pause: bool,

    /// The container
    #[arg(value_name = "CONTAINER")]
    pub container: String,

    /// The new image's name (untagged when omitted)
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub image: Option<String>,
}

/// `strata cp [-a] [-L] SRC DST` where one side is `CONTAINER:PATH` and the other a host path
/// or `-` (a tar stream on stdin/stdout).
#[derive(Debug, Args)]
pub struct CpArgs {
    /// Archive mode (copy all uid/gid information)
    #[arg(short, long)]
    pub archive: bool,

    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long)]
    pub follow_link: bool,

    /// Source: CONTAINER:SRC_PATH, a host path, or - (a tar stream on stdin)
    #[arg(value_name = "SRC")]
    pub source: String,

    /// Destination: CONTAINER:DEST_PATH, a host path, or - (a tar stream on stdout)
    #[arg(value_name = "DEST")]
    pub dest: String,
}
