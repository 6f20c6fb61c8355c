"""The folder walk behind ``jinaclip index PATH...`` (ingest.walk) and its gitignore-style patterns (ingest.ignore)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from jinaclip_integrations.errors import InputError
from jinaclip_integrations.ingest.ignore import IgnoreRules, compile_glob
from jinaclip_integrations.ingest.walk import REASONS, Listing, Root, Skipped, walk


def supported(path: Path) -> bool:
    return path.suffix in {".md", ".txt", ".png"}


def make(root: Path, *names: str) -> Path:
    """Create files (and, for names ending in "/", folders) below ``root``."""
    for name in names:
        path = root / name
        if name.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("x")
    return root


def run(*paths: str | Path, **options) -> Listing:
    return walk([str(path) for path in paths], supported=supported, **options)


def files(listing: Listing, root: Path) -> list[str]:
    return [path.relative_to(root).as_posix() for path in listing.files]


def skipped(listing: Listing, root: Path) -> dict[str, str]:
    return {Path(s.path).relative_to(root).as_posix(): s.reason for s in listing.skipped}


def outside_git(path: Path) -> bool:
    return not any((folder / ".git").exists() for folder in [path, *path.parents])


# --- what a folder walk takes and skips ------------------------------------------------------------------------------


def test_default_skips(tmp_path):
    make(
        tmp_path,
        "a.md",
        "b/c.md",
        "b.md",
        "image.png",
        "notes.bin",
        "README",
        ".hidden.md",
        ".config/x.md",
        ".git/HEAD",
        ".git/objects/ab/cd",
        ".hg/x",
        "_darcs/x",
        "node_modules/pkg/README.md",
        "venv/pyvenv.cfg",
        "venv/lib/x.md",
        "conda/conda-meta/history",
        "conda/x.md",
        "__pycache__/x.md",
        "data/store/jinaclip.json",
        "data/store/segments/0.md",
        "data/other.md",
        "mystore/x.md",
        "fake_store/jinaclip.json",
        "fake_store/segments",  # a file, not a folder: no store
    )
    listing = run(tmp_path, skip=[tmp_path / "b" / ".." / "mystore"])
    assert files(listing, tmp_path) == ["a.md", "b/c.md", "b.md", "data/other.md", "image.png"]
    assert skipped(listing, tmp_path) == {
        ".config": "hidden",
        ".git": "vcs",
        ".hg": "vcs",
        ".hidden.md": "hidden",
        "README": "unsupported",
        "__pycache__": "cache",
        "_darcs": "vcs",
        "conda": "virtualenv",
        "data/store": "store",
        "fake_store/jinaclip.json": "unsupported",
        "fake_store/segments": "unsupported",
        "mystore": "store",
        "node_modules": "node_modules",
        "notes.bin": "unsupported",
        "venv": "virtualenv",
    }
    assert [s.path for s in listing.skipped].count(str(tmp_path / ".git")) == 1
    assert all(os.path.isabs(s.path) and s.reason in REASONS for s in listing.skipped)
    assert listing.counts() == {
        "hidden": 2,
        "vcs": 3,
        "unsupported": 4,
        "cache": 1,
        "virtualenv": 2,
        "store": 2,
        "node_modules": 1,
    }


def test_a_named_hidden_folder_is_walked(tmp_path):
    make(tmp_path, ".notes/a.md", ".notes/.b.md")
    listing = run(tmp_path / ".notes")
    assert files(listing, tmp_path) == [".notes/a.md"]
    assert skipped(listing, tmp_path) == {".notes/.b.md": "hidden"}


def test_the_store_folder_itself_is_skipped_when_named(tmp_path):
    make(tmp_path, "store/x.md")
    listing = run(tmp_path / "store", skip=[tmp_path / "store"])
    assert listing.files == [] and skipped(listing, tmp_path) == {"store": "store"}


def test_symlinked_folder_is_not_followed_symlinked_file_is_taken(tmp_path):
    make(tmp_path, "real/a.md", "other/b.md")
    (tmp_path / "real" / "link").symlink_to(tmp_path / "other", target_is_directory=True)
    (tmp_path / "real" / "c.md").symlink_to(tmp_path / "other" / "b.md")
    listing = run(tmp_path / "real")
    assert files(listing, tmp_path) == ["real/a.md", "real/c.md"]
    assert skipped(listing, tmp_path) == {"real/link": "symlink_dir"}


def test_special_files_are_skipped(tmp_path):
    make(tmp_path, "a.md")
    (tmp_path / "broken.md").symlink_to(tmp_path / "missing.md")
    os.mkfifo(tmp_path / "pipe.md")
    listing = run(tmp_path)
    assert files(listing, tmp_path) == ["a.md"]
    assert skipped(listing, tmp_path) == {"broken.md": "special", "pipe.md": "special"}
    with pytest.raises(InputError, match="pipe.md is not a regular file"):  # reading it would block
        run(tmp_path / "pipe.md")


def test_unreadable_folder(tmp_path):
    make(tmp_path, "a.md", "locked/b.md")
    (tmp_path / "locked").chmod(0)
    try:
        if os.access(tmp_path / "locked", os.R_OK):
            pytest.skip("permissions are not enforced (running as root)")
        listing = run(tmp_path)
        assert files(listing, tmp_path) == ["a.md"]
        assert skipped(listing, tmp_path) == {"locked": "unreadable_dir"}
    finally:
        (tmp_path / "locked").chmod(0o755)


def test_folder_that_cannot_be_listed(tmp_path, monkeypatch):  # as the chmod test, also when running as root
    make(tmp_path, "a.md", "locked/b.md")
    scandir = os.scandir

    def refuse(path):
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", path)
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refuse)
    assert skipped(run(tmp_path), tmp_path) == {"locked": "unreadable_dir"}
    assert skipped(run(tmp_path / "locked"), tmp_path) == {"locked": "unreadable_dir"}


def test_walk_order_is_depth_first_by_name(tmp_path):
    make(tmp_path, "b.md", "a/z.md", "a/b/c.md", "a.md", "a/a.md", "C.md")
    assert files(run(tmp_path), tmp_path) == ["C.md", "a/a.md", "a/b/c.md", "a/z.md", "a.md", "b.md"]


# --- .gitignore ------------------------------------------------------------------------------------------------------


def rules(*lines: str, base: Path = Path("/r")) -> IgnoreRules:
    return IgnoreRules.parse(lines, base)


@pytest.mark.parametrize(
    ("lines", "path", "is_dir", "expected"),
    [
        (["*.log"], "a/b/x.log", False, True),  # no slash: any depth
        (["*.log", "!keep.log"], "a/keep.log", False, False),  # negation, the later rule wins
        (["!keep.log", "*.log"], "a/keep.log", False, True),
        (["build/"], "a/build", True, True),  # dir-only
        (["build/"], "a/build", False, None),
        (["/top.md"], "top.md", False, True),  # anchored
        (["/top.md"], "a/top.md", False, None),
        (["a/top.md"], "x/a/top.md", False, None),  # a middle slash anchors too
        (["top.md"], "a/top.md", False, True),
        (["**/deep.md"], "deep.md", False, True),
        (["**/deep.md"], "a/b/deep.md", False, True),
        (["a/**/z.md"], "a/z.md", False, True),
        (["a/**/z.md"], "a/b/c/z.md", False, True),
        (["a/**/z.md"], "b/a/z.md", False, None),
        (["out/**"], "out/x/y.md", False, True),
        (["out/**"], "out", True, None),
        (["a/*.md"], "a/b/c.md", False, None),  # "*" does not cross "/"
        (["a/?.md"], "a/x.md", False, True),
        (["[Tt]emp[0-9].md"], "Temp3.md", False, True),
        (["[!a-m]*.md"], "notes.md", False, True),
        (["[!a-m]*.md"], "books.md", False, None),
        (["*.[[:digit:]]"], "log.7", False, True),
        (["# comment"], "# comment", False, None),
        (["\\#hash.md"], "#hash.md", False, True),
        (["\\!bang.md"], "!bang.md", False, True),
        (["trailing.md   "], "trailing.md", False, True),  # trailing spaces dropped
        (["space.md\\ "], "space.md ", False, True),  # unless escaped
        (["space.md\\ "], "space.md", False, None),
        (["", "  ", "*.md"], "x.md", False, True),  # blank lines
        (["a.md\r\n"], "a.md", False, True),
    ],
)
def test_ignore_rules(lines, path, is_dir, expected):
    assert rules(*lines).match(Path("/r") / path, is_dir) is expected


def test_ignore_rules_only_match_below_their_base():
    assert rules("*").match(Path("/elsewhere/x.md"), False) is None
    assert rules("*").match(Path("/r"), True) is None


def test_compile_glob():
    assert compile_glob("**/*.md").fullmatch("a/b/c.md")
    assert compile_glob("**/*.md").fullmatch("c.md")
    assert not compile_glob("*.md").fullmatch("a/c.md")
    assert compile_glob("a/**").fullmatch("a/b/c")
    assert not compile_glob("a?c").fullmatch("a/c")
    assert not compile_glob("a[/]c").fullmatch("a/c")
    assert compile_glob("[]x]").fullmatch("]")
    assert compile_glob("[abc").fullmatch("[abc")  # an unclosed class is literal
    assert compile_glob("**/*.md").fullmatch(".a/.b.md")
    assert not compile_glob("**/*.md", hidden=False).fullmatch(".a/b.md")
    assert not compile_glob("**/*.md", hidden=False).fullmatch("a/.b.md")
    assert compile_glob(".a/**/.*.md", hidden=False).fullmatch(".a/b/.c.md")


def test_gitignore_in_a_walk(tmp_path):
    make(
        tmp_path,
        "keep.md",
        "drop.txt",
        "build/a.md",
        "logs/a.md",
        "logs/important.md",
        "sub/drop.txt",
        "sub/mine.md",
        "sub/deep/other.md",
        "sub/deep/x.txt",
        "top.md",
        "sub/top.md",
    )
    (tmp_path / ".gitignore").write_text("*.txt\nbuild/\nlogs/\n!logs/important.md\n/top.md\nmine.md\n")
    (tmp_path / "sub" / ".gitignore").write_text("!drop.txt\n!mine.md\n")
    listing = run(tmp_path)
    assert files(listing, tmp_path) == ["keep.md", "sub/deep/other.md", "sub/drop.txt", "sub/mine.md", "sub/top.md"]
    assert skipped(listing, tmp_path) == {
        ".gitignore": "hidden",
        "build": "gitignore",
        "drop.txt": "gitignore",
        "logs": "gitignore",  # listed once; important.md inside cannot be re-included
        "sub/.gitignore": "hidden",
        "sub/deep/x.txt": "gitignore",
        "top.md": "gitignore",
    }
    assert files(run(tmp_path, gitignore=False), tmp_path)[:3] == ["build/a.md", "drop.txt", "keep.md"]


def test_gitignore_above_the_root_in_the_repository(tmp_path):
    make(tmp_path, "repo/.git/HEAD", "repo/docs/a.md", "repo/docs/b.md", "repo/docs/c.md", "repo/docs/sub/d.md")
    (tmp_path / "repo" / ".gitignore").write_text("b.md\ndocs/sub/\n")
    (tmp_path / "repo" / ".git" / "info").mkdir()
    (tmp_path / "repo" / ".git" / "info" / "exclude").write_text("c.md\n")
    listing = run(tmp_path / "repo" / "docs")
    assert files(listing, tmp_path) == ["repo/docs/a.md"]
    assert skipped(listing, tmp_path) == {
        "repo/docs/b.md": "gitignore",
        "repo/docs/c.md": "gitignore",
        "repo/docs/sub": "gitignore",
    }


def test_gitignore_above_the_root_outside_a_repository_is_not_read(tmp_path):
    if not outside_git(tmp_path):
        pytest.skip("the temporary folder is inside a git repository")
    make(tmp_path, "docs/a.md", "docs/b.md")
    (tmp_path / ".gitignore").write_text("*.md\n")
    (tmp_path / "docs" / ".gitignore").write_text("b.md\n")
    assert files(run(tmp_path / "docs"), tmp_path) == ["docs/a.md"]


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_ignore_rules_agree_with_git(tmp_path):
    top = """
# a comment
\\#hash.md
\\!bang.md
trailing.md   
space\\ .md
*.log
!keep.log
build/
/rootonly.md
docs/*.tmp
**/deep/x.md
a/**/z.md
out/**
!out/keep.md
[Tt]emp?.md
[!a-m]*.cfg
*.[[:digit:]]
only_dir/
foo/bar.md
x*/y.md
**/cache
!cache/
***/triple.md
a/**b.md
lit\\*star.md
[[:upper:]]*.up
mid/dir/
y/**/
"""
    nested = "!*.log\n/local.md\nnested/\n!rootonly.md\n"
    names = [
        "#hash.md", "!bang.md", "trailing.md", "space .md", "space.md", "a.log", "keep.log", "build/f.md",
        "sub/build/f.md", "rootonly.md", "sub/rootonly.md", "docs/a.tmp", "docs/b/a.tmp", "sub/docs/a.tmp",
        "deep/x.md", "p/q/deep/x.md", "a/z.md", "a/b/c/z.md", "b/a/z.md", "out/keep.md", "out/o/keep.md", "out/x.md",
        "temp1.md", "Temp22.md", "tempx.md", "b.cfg", "n.cfg", "x.7", "x.77", "only_dir/f.md", "q/only_dir",
        "foo/bar.md", "q/foo/bar.md", "x1/y.md", "x1/z/y.md", "cache/f.md", "q/cache", "sub/a.log", "sub/local.md",
        "sub/q/local.md", "sub/nested/f.md", "sub/q/nested", "plain.md", "triple.md", "q/triple.md", "a/xb.md",
        "a/q/b.md", "lit*star.md", "litxstar.md", "A.up", "a.up", "mid/dir/f.md", "q/mid/dir/f.md", "y/k/f.md", "y/f.md",
    ]  # fmt: skip
    make(tmp_path, *names)
    (tmp_path / ".gitignore").write_text(top)
    (tmp_path / "sub" / ".gitignore").write_text(nested)
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    stack = [rules(*top.splitlines(), base=tmp_path), rules(*nested.splitlines(), base=tmp_path / "sub")]

    def decide(path: Path, is_dir: bool) -> bool | None:  # the deepest ignore file with a rule decides
        return next((v for r in reversed(stack) if (v := r.match(path, is_dir)) is not None), None)

    def expected(rel: str) -> bool | None:  # a path in an ignored folder is ignored, as git check-ignore says
        path = tmp_path / rel
        if any(decide(tmp_path / parent, True) for parent in Path(rel).parents if parent != Path(".")):
            return True
        return decide(path, path.is_dir())

    paths = sorted({p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if ".git" not in p.parts})
    git = subprocess.run(
        ["git", "-C", str(tmp_path), "check-ignore", "--no-index", "-v", "-n", "--stdin", "-z"],
        input="\0".join(paths) + "\0",
        capture_output=True,
        text=True,
    )
    fields = git.stdout.split("\0")
    verdicts = {
        fields[k + 3]: (None if not fields[k + 2] else not fields[k + 2].startswith("!"))
        for k in range(0, len(fields) - 1, 4)
    }
    assert set(verdicts) == set(paths)
    assert {p: expected(p) for p in paths} == verdicts


# --- --include / --exclude -------------------------------------------------------------------------------------------


def test_exclude(tmp_path):
    make(tmp_path, "a.md", "b.txt", "drafts/c.md", "docs/drafts/d.md", "docs/e.md", "docs/f.md")
    listing = run(tmp_path, exclude=["drafts/", "/docs/f.md", "*.txt"])
    assert files(listing, tmp_path) == ["a.md", "docs/e.md"]
    assert skipped(listing, tmp_path) == {
        "b.txt": "excluded",
        "drafts": "excluded",
        "docs/drafts": "excluded",
        "docs/f.md": "excluded",
    }


def test_include(tmp_path):
    make(tmp_path, "a.md", "b.txt", "docs/c.txt", "docs/sub/d.png", "other/e.md")
    listing = run(tmp_path, include=["*.md", "docs/"])
    assert files(listing, tmp_path) == ["a.md", "docs/c.txt", "docs/sub/d.png", "other/e.md"]
    assert skipped(listing, tmp_path) == {"b.txt": "not_included"}
    listing = run(tmp_path, include=["/*.md"])  # anchored to the root folder
    assert files(listing, tmp_path) == ["a.md"]


def test_include_and_exclude_of_a_named_file(tmp_path):
    make(tmp_path, "a.md", "b.txt")
    listing = run(tmp_path / "a.md", tmp_path / "b.txt", include=["*.md"], exclude=["a.*"])
    assert listing.files == []
    assert skipped(listing, tmp_path) == {"a.md": "excluded", "b.txt": "not_included"}


# --- globs, named files, errors --------------------------------------------------------------------------------------


def test_quoted_glob(tmp_path, monkeypatch):
    make(tmp_path, "docs/a.md", "docs/b.txt", "docs/x/c.md", "docs/x/y/d.md", "docs/.h/e.md", "docs/.f.md", "f.md")
    make(tmp_path, "docs/x/y/drafts/g.md", "docs/n.bin", "docs/node_modules/n.md", "docs/z.md/h.md", "docs/z.md/i.txt")
    monkeypatch.chdir(tmp_path)
    listing = run("docs/**/*.md", exclude=["drafts/"])
    assert files(listing, tmp_path) == [
        "docs/a.md",
        "docs/node_modules/n.md",  # as a shell expands it
        "docs/x/c.md",
        "docs/x/y/d.md",
        "docs/z.md/h.md",  # a matched folder is walked
        "docs/z.md/i.txt",
    ]
    assert skipped(listing, tmp_path) == {"docs/x/y/drafts/g.md": "excluded"}
    assert listing.roots == [Root("docs/**/*.md", str(tmp_path / "docs/**/*.md"), "glob")]
    assert files(run("docs/*"), tmp_path)[:2] == ["docs/a.md", "docs/b.txt"]
    assert skipped(run("docs/*.bin"), tmp_path) == {"docs/n.bin": "unsupported"}
    assert files(run("docs/.*.md"), tmp_path) == ["docs/.f.md"]
    assert files(run("docs/**/.h/*"), tmp_path) == ["docs/.h/e.md"]


def test_glob_that_matches_nothing(tmp_path):
    make(tmp_path, "a.md")
    with pytest.raises(InputError) as info:
        run(tmp_path / "a.md", tmp_path / "*.pdf")
    assert info.value.index == 1 and info.value.kind == "path"
    assert info.value.reason == f"{tmp_path / '*.pdf'} matches no file"


def test_named_hidden_or_gitignored_file_is_taken(tmp_path):
    make(tmp_path, ".secret.md", "ignored.md")
    (tmp_path / ".gitignore").write_text("ignored.md\n")
    listing = run(tmp_path, tmp_path / ".secret.md", tmp_path / "ignored.md")
    assert files(listing, tmp_path) == [".secret.md", "ignored.md"]
    assert skipped(listing, tmp_path) == {".gitignore": "hidden"}


def test_a_missing_path_fails_before_anything_is_read(tmp_path, monkeypatch):
    make(tmp_path, "a/b.md")
    seen = []
    monkeypatch.setattr(os, "scandir", lambda *args: pytest.fail("a folder was read"))
    with pytest.raises(InputError) as info:
        walk([tmp_path / "a", "*.md", tmp_path / "nope"], supported=lambda p: seen.append(p) or True)
    assert info.value.index == 2 and info.value.kind == "path"
    assert info.value.reason == f"{tmp_path / 'nope'} does not exist" and str(tmp_path / "nope") in str(info.value)
    assert seen == []


def test_a_named_file_of_an_unsupported_type_is_an_error(tmp_path):
    make(tmp_path, "a.md", "b.bin", "Makefile")
    with pytest.raises(InputError, match=r"index 1: .*b\.bin is not a supported file type \(\.bin\)"):
        run(tmp_path / "a.md", tmp_path / "b.bin")
    with pytest.raises(InputError, match=r"Makefile is not a supported file type \(no suffix\)"):
        run(tmp_path / "Makefile")


def test_each_file_once(tmp_path):
    make(tmp_path, "a/b.txt", "a/c.md", "a/.h.md")
    (tmp_path / "a" / "link.md").symlink_to(tmp_path / "a" / "c.md")
    listing = run(tmp_path / "a" / "b.txt", tmp_path / "a", tmp_path / "a" / "b.txt", tmp_path / "a" / ".h.md")
    assert files(listing, tmp_path) == ["a/b.txt", "a/c.md", "a/.h.md"]
    assert listing.skipped == []  # .h.md was taken, link.md is c.md
    listing = run(tmp_path, tmp_path / "a")
    assert files(listing, tmp_path) == ["a/b.txt", "a/c.md"]
    assert listing.counts() == {"hidden": 1}


def test_relative_paths_give_absolute_ones(tmp_path, monkeypatch):
    make(tmp_path, "docs/a.md", "b.md")
    monkeypatch.chdir(tmp_path / "docs")
    listing = walk(["../b.md", "."], supported=supported)
    assert listing.files == [tmp_path / "b.md", tmp_path / "docs" / "a.md"]
    assert listing.roots == [
        Root("../b.md", str(tmp_path / "b.md"), "file"),
        Root(".", str(tmp_path / "docs"), "folder"),
    ]
    assert walk("a.md", supported=supported).files == [tmp_path / "docs" / "a.md"]


# --- scope ------------------------------------------------------------------------------------------------------------


def test_root_covers():
    file, folder = Root("x.md", "/a/x.md", "file"), Root("doc", "/a/doc", "folder")
    assert file.covers("/a/x.md") and not file.covers("/a/x.md.bak") and not file.covers("/a/y.md")
    assert folder.covers("/a/doc") and folder.covers("/a/doc/x.md") and folder.covers("/a/doc/b/c/x.png")
    assert not folder.covers("/a/docs/x") and not folder.covers("/a/x.md")
    glob = Root("docs/**/*.md", "/a/docs/**/*.md", "glob")
    assert glob.covers("/a/docs/x.md") and glob.covers("/a/docs/b/c/x.md")
    assert glob.covers("/a/docs/folder.md/inside.txt")  # a matched folder is walked
    assert not glob.covers("/a/docs/x.txt") and not glob.covers("/a/other/x.md")
    assert not glob.covers("/a/docs/.hidden/x.md")  # the glob does not match it either


def test_listing_covers(tmp_path):
    make(tmp_path, "docs/a.md", "docs/b.md", "doc/c.md", "notes/d.md")
    listing = run(tmp_path / "docs", tmp_path / "notes" / "d.md")
    assert listing.covers(str(tmp_path / "docs" / "deleted.md"))
    assert listing.covers(str(tmp_path / "notes" / "d.md"))
    assert not listing.covers(str(tmp_path / "doc" / "c.md"))
    assert not listing.covers(str(tmp_path / "notes" / "e.md"))


def test_skipped_is_a_value():
    assert Skipped("/a", "hidden") == Skipped("/a", "hidden")
    assert set(REASONS) >= {"hidden", "vcs", "store", "gitignore", "excluded", "not_included", "unsupported"}


# --- speed ------------------------------------------------------------------------------------------------------------


@pytest.fixture
def scratch(tmp_path):
    """A folder in memory where there is one (/dev/shm): creating 20,000 files on a busy disk can take many seconds."""
    if not os.access("/dev/shm", os.W_OK):
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(dir="/dev/shm") as folder:
        yield Path(folder)


def test_twenty_thousand_files_walk(scratch):
    for d in range(200):
        folder = scratch / f"d{d // 20}" / f"e{d}"
        folder.mkdir(parents=True)
        for f in range(100):
            (folder / f"f{f}.{'md' if f % 3 else 'bin'}").touch()
        if d % 10 == 0:
            (folder / ".gitignore").write_text("*7.md\n!f17.md\nsub/\n")
    (scratch / ".gitignore").write_text("# top\n*.tmp\nbuild/\n**/cache/\n")
    listing = run(scratch, exclude=["*99.md"])  # its speed: benchmarks/bench_walk.py
    assert len(listing.files) + len(listing.skipped) == 20_021  # and 21 .gitignore files
