//! Parser throughput: a generated 10,000-line realistic Dockerfile through the raw layer
//! ([`strata_parser::parse`]) and the typed layer ([`strata_parser::parse_dockerfile`]), plus
//! the word expander on a few typical words.
//!
//! Run with `cargo bench --bench parse`. The goal is under 10 ms for the 10,000 lines.

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use strata_parser::shell::Lexer;

/// How many lines the generated Dockerfile has (at least).
const LINES: usize = 10_000;

/// One stage of a realistic multi-stage Dockerfile: every instruction, continuations,
/// heredocs, JSON and shell forms, flags. `i` makes names unique.
fn stage(i: usize) -> String {
    let from = match i {
        0 => "alpine:3.20".to_string(),
        _ => format!("build{}", i - 1),
    };
    let port = 8000 + i % 1000;
    format!(
        r#"# Stage {i}: build something.
FROM --platform=$BUILDPLATFORM golang:1.23-alpine AS build{i}
ARG VERSION=1.{i}.0
ARG TARGETOS TARGETARCH
ENV CGO_ENABLED=0 GOOS=${{TARGETOS}} GOARCH=${{TARGETARCH:-amd64}} \
    PATH="/usr/local/go/bin:$PATH"
LABEL org.opencontainers.image.version="${{VERSION}}" \
      org.opencontainers.image.title="app {i}"
WORKDIR /src/app{i}
COPY --from={from} --chown=1000:1000 --chmod=644 go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go mod download && \
    go mod verify
ADD --checksum=sha256:0000000000000000000000000000000000000000000000000000000000000000 https://example.com/a{i}.tar.gz /tmp/
COPY <<EOF /etc/app{i}.conf
listen = ":80{i}"
name = "app{i}"
EOF
RUN <<-SCRIPT
	set -eux
	echo "building ${{VERSION}}"
	go build -o /out/app{i} ./cmd/app
SCRIPT
USER 1000:1000
EXPOSE {port}/tcp 443
VOLUME ["/data{i}", "/cache"]
HEALTHCHECK --interval=30s --timeout=3s --retries=3 CMD ["/out/app{i}", "health"]
SHELL ["/bin/sh", "-ec"]
ONBUILD RUN echo "child of {i}"
STOPSIGNAL SIGTERM
ENTRYPOINT ["/out/app{i}"]
CMD ["--config", "/etc/app{i}.conf"]
"#
    )
}

/// A realistic Dockerfile of at least `lines` lines.
fn dockerfile(lines: usize) -> String {
    let mut src = String::from("# syntax=docker/dockerfile:1\n# check=skip=all\nARG BASE=alpine\n");
    let mut count = src.lines().count();
    for i in 0.. {
        if count >= lines {
            break;
        }
        let stage = stage(i);
        count += stage.lines().count();
        src.push_str(&stage);
    }
    src
}

fn bench_parse(c: &mut Criterion) {
    let src = dockerfile(LINES);
    // Measure the success path: the generated file must be valid for both layers.
    if let Err(err) = strata_parser::parse_dockerfile(&src) {
        panic!("the generated Dockerfile does not parse: {err}");
    }
    let mut group = c.benchmark_group("parse_10k_lines");
    group.throughput(Throughput::Bytes(src.len() as u64));
    group.bench_function("raw", |b| {
        b.iter(|| strata_parser::parse(black_box(&src)));
    });
    group.bench_function("typed", |b| {
        b.iter(|| strata_parser::parse_dockerfile(black_box(&src)));
    });
    group.finish();
}

fn bench_expand(c: &mut Criterion) {
    let env: HashMap<String, String> = HashMap::from([
        ("VERSION".to_string(), "1.2.3".to_string()),
        (
            "PATH".to_string(),
            "/usr/local/bin:/usr/bin:/bin".to_string(),
        ),
        ("HOME".to_string(), "/root".to_string()),
    ]);
    let lexer = Lexer::new('\\');
    let words = [
        ("plain", "/usr/local/bin"),
        ("simple", "$HOME/.cache"),
        ("braced", "app-${VERSION}.tar.gz"),
        (
            "modifiers",
            "${UNSET:-default}/${VERSION:+v$VERSION}/${PATH%%:*}/${PATH#*:}",
        ),
        ("quoted", r#""a b" 'c $d' e\ f "${VERSION}""#),
    ];
    let mut group = c.benchmark_group("expand");
    for (name, word) in words {
        group.bench_function(name, |b| {
            b.iter(|| lexer.process_word(black_box(word), &env));
        });
    }
    group.bench_function("words_split", |b| {
        b.iter(|| lexer.process_words(black_box(r#"a "b c" $PATH ${VERSION}"#), &env));
    });
    group.finish();
}

criterion_group!(benches, bench_parse, bench_expand);
criterion_main!(benches);
