#!/usr/bin/python3
"""Dependency self-check: what the source tree uses is what scripts/debian-packages.txt
installs on a fresh Debian 12 or 13 machine (this release's lines: scripts/install-deps --list).

Elements: every GStreamer element factory that tools/, tests/, scripts/, gst/ or lib/
name (in a pipeline description, gst_element_factory_make/find, Gst.ElementFactory.make,
gst-launch-1.0 lines, factory-name lists, the encoder catalogue) must be in the registry,
and the Debian package that ships its plugin file (dpkg -S) must be installed by
scripts/debian-packages.txt: listed there, or a Depends/Pre-Depends of a listed package
(installed with it even under --no-install-recommends), or part of every Debian system
(Essential or Priority required: what debootstrap --variant=minbase installs).
Left out: our own elements (registered in gst/), test doubles (registered by tests/),
and the hardware or optional elements of HARDWARE_OR_OPTIONAL below.

Programs: every program the scripts and tests run (PROGRAMS below) must be on PATH and
come from such a package; a scan of scripts/ and tests/ (shell command words, the
first word of subprocess/popen/g_spawn argument lists, find_program) checks that
PROGRAMS covers what they run. OPTIONAL_PROGRAMS lists the ones only optional tools need.

The element -> Debian package table in lib/ccm/catalog/catalog.cpp (which the demos use
to say what to install when an element is missing) is checked against dpkg -S too, and
must cover every element tools/ names.

    check_deps.py SOURCE_ROOT        (exit 0: all present; 1: a failure per line)
"""
import fnmatch
import io
import os
import re
import shutil
import subprocess
import sys
import time
import tokenize

# ---- what may be absent, and why ---------------------------------------------

# Elements that need a GPU, a driver stack or a GStreamer newer than Debian 12's 1.22:
# ccmencbin and the tests name them, and use them only where the machine has them.
HARDWARE_OR_OPTIONAL = {
    "nv*": "NVIDIA NVENC/NVDEC (nvcodec): present only with an NVIDIA GPU and its driver",
    "cuda*": "nvcodec's CUDA memory elements (cudaupload, cudadownload, cudaconvert): NVIDIA GPU only",
    "va[a-z0-9]*enc": "VA-API encoders (va plugin): present only with an Intel/AMD GPU and its VA driver",
    "va[a-z0-9]*dec": "VA-API decoders (va plugin): Intel/AMD GPU only",
    "varender*": "per-device copies of the VA-API elements: Intel/AMD GPU only",
    "vapostproc": "VA-API scaler/converter: Intel/AMD GPU only",
    "vaapi*": "gstreamer-vaapi (gstreamer1.0-vaapi): Intel/AMD GPU only, not needed by the suite",
    "qsv*": "Intel Quick Sync (qsv plugin, oneVPL): Intel GPU only",
    "msdk*": "Intel Media SDK: Intel GPU only",
    "amf*": "AMD AMF: AMD GPU on Windows only",
    "v4l2*": "V4L2 hardware codecs and capture devices: present only on machines with such devices",
    "svtav1enc": "upstream SVT-AV1 element: gst-plugins-bad 1.24+, not in Debian 12 (ccmsvtav1enc is ours)",
    "testdouble*": "test doubles registered at run time by tests/element (register_hardware_double)",
}

# Words in pipeline-like strings that are not element factories.
NOT_ELEMENTS = {
    "gst-launch-1.0": "the program, before its pipeline",
    "ccmnosuchelement": "missing on purpose: tests/webrtc check what the sender says about a missing element",
}

# Programs the scripts and tests run, and the Debian package of each (for the message
# when it is missing; when it is installed, dpkg -S decides).
PROGRAMS = {
    "ffmpeg": "ffmpeg",
    "ffprobe": "ffmpeg",
    "dav1d": "dav1d",
    "libde265-dec265": "libde265-examples",
    "vpxdec": "vpx-tools",
    "gst-launch-1.0": "gstreamer1.0-tools",
    "gst-inspect-1.0": "gstreamer1.0-tools",
    "chromium": "chromium",
    "node": "nodejs",
    "meson": "meson",
    "ninja": "ninja-build",
    "python3": "python3",
    "ip": "iproute2",
    "tc": "iproute2",
    "clang": "clang",
    "clang++": "clang",
    "valgrind": "valgrind",
    "nm": "binutils",
    "SvtAv1EncApp": "svt-av1",
    "apt-get": "apt",
    "pkg-config": "pkg-config",
    # tests/capi/check_pkgconfig.sh builds a C API user as docs/c-api.md tells one to.
    "cc": "gcc",
    "c++": "g++",
}

# Programs only optional tools need (the suite and the two README commands never do).
OPTIONAL_PROGRAMS = {
    "npm": "scripts/install-deps installs Debian's npm when it is missing (nodesource's nodejs carries "
           "its own npm and conflicts with Debian's); the browser tests skip without it",
    "x265": "scripts/gpu-bench only, which unpacks Debian's x265 itself (apt-get download)",
    "nvcc": "the cuda build option (-Dcuda=enabled): the CUDA toolkit, not in Debian main",
    "nvidia-smi": "NVIDIA driver tools: GPU machines only",
    "debootstrap": "scripts/fresh-check only (makes the fresh chroot)",
    "sudo": "scripts/install-deps, only when not root",
}

# Scripts that run only on other machines or by hand, not on the way of the README's two
# commands or the suite: the programs only they run are not required here.
OPTIONAL_TOOLS = {
    "scripts/gpu-bench": "the lent GPU machine only (a container of its own, tools unpacked there)",
    "scripts/nvidia-h100-check": "NVIDIA H100 machines only",
    "scripts/fresh-check": "run by hand on a host with debootstrap; it installs the list into a chroot",
}

# Shell words in command position that are not programs.
SHELL_WORDS = set("""
    ! [ [[ ]] { } ( ) . : alias bg bind break builtin case cd command compgen complete continue
    declare dirs disown do done echo elif else enable esac eval exec exit export false fc fg fi
    for function getopts hash help history if in jobs kill let local logout mapfile popd printf
    pushd pwd read readarray readonly return select set shift shopt source suspend test then
    time times trap true type typeset ulimit umask unalias unset until wait while
""".split())

ELEMENT_NAME = re.compile(r"^[a-z][a-z0-9_]*[a-z0-9]$")
PROGRAM_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.+-]*$")

SCAN_DIRS = ["tools", "tests", "scripts", "gst", "lib"]
SKIP = {"tests/fixtures", "tests/fuzz/corpus", "tests/media", "tests/deps/check_deps.py"}
C_EXT = {".c", ".cc", ".cpp", ".h", ".hpp", ".cu", ".cuh"}
HOLE = "\x00"  # a run-time value inside a string built from pieces


class Uses:
    """name -> [(file, line)] of where the tree uses it."""

    def __init__(self):
        self.places = {}

    def add(self, name, where):
        self.places.setdefault(name, [])
        if where not in self.places[name]:
            self.places[name].append(where)

    def where(self, name, n=3):
        places = self.places.get(name, [])
        text = ", ".join(f"{f}:{l}" for f, l in places[:n])
        return text + (f" (+{len(places) - n} more)" if len(places) > n else "")


strong_elements = Uses()   # certainly meant as element factories
weak_elements = Uses()     # bare words in string lists: elements if they look like one
strong_programs = Uses()
weak_programs = Uses()
texts = {}  # file -> its text, to say where a program of PROGRAMS is named


# ---- reading the sources -------------------------------------------------------

def pipeline_segments(text):
    """First word of each '!'-separated segment of a pipeline description."""
    words = []
    for segment in re.split(r"(?:^|\s)!(?=\s|$)", text):
        tokens = segment.split()
        # gst-launch-1.0 [options] before the first element
        while tokens and (os.path.basename(tokens[0].strip("\"'")) == "gst-launch-1.0" or
                          (words == [] and tokens[0].startswith("-") and len(tokens) > 1)):
            tokens.pop(0)
        if not tokens:
            continue
        words.append(tokens[0].strip("\"'"))
    return words


def add_pipeline(text, where):
    """Element names of a pipeline description. After a '!' the first word is an element;
    before the first '!' it may be prose or a command ("cannot link appsrc ! ..."), so it
    counts only if the registry or our tables know it."""
    if not re.search(r"(?:^|\s)!(?=\s|$)", text):
        return
    for k, word in enumerate(pipeline_segments(text)):
        if HOLE in word or "/" in word or "=" in word or "." in word or "%" in word or "$" in word:
            continue  # a run-time value, caps, a property, a pad reference (name.), a variable
        if ELEMENT_NAME.match(word):
            (weak_elements if k == 0 else strong_elements).add(word, where)


def add_bare_word(word, where):
    if ELEMENT_NAME.match(word):
        weak_elements.add(word, where)


def add_literal_groups(groups, where):
    """The literals of one statement, as groups separated by commas (list elements,
    arguments): each group a pipeline description of its own, or all of them one when
    '!' is an element of its own (an argument vector of gst-launch-1.0)."""
    for g in groups:
        add_pipeline(g, where)
    if any(g.strip() == "!" for g in groups):
        add_pipeline(" ".join(groups), where)


def scan_c(rel, text):
    """C/C++: string literals grouped per statement; comments for gst-launch lines."""
    i, n, line = 0, len(text), 1
    statement = []  # ("lit", text, line) and ("code", text)
    braces = []  # per open brace: whether it opened a block
    comment_lines = []

    def flush():
        if statement:
            c_statement(rel, statement)
        statement.clear()

    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            statement.append(("code", " "))
            i += 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            comment_lines.append((line, text[i + 2:j]))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j
            for k, l in enumerate(text[i + 2:j].split("\n")):
                comment_lines.append((line + k, l))
            line += text.count("\n", i, j)
            i = j + 2
        elif c == "'":
            m = re.compile(r"'(?:[^'\\\n]|\\.)*'").match(text, i)
            i = m.end() if m else i + 1
        elif c == '"':
            m = re.compile(r'"((?:[^"\\\n]|\\.)*)"').match(text, i)
            if not m:
                i += 1
                continue
            value = m.group(1)
            value = re.sub(r"\\[nt]", " ", value).replace('\\"', '"').replace("\\\\", "\\")
            value = re.sub(r"%[-+ #0-9.]*(?:l|ll|z|h)?[a-zA-Z]", HOLE, value)
            statement.append(("lit", value, line))
            i = m.end()
        elif c == ";":
            flush()
            i += 1
        elif c == "{":
            # A block ends the statement; an initializer list ({"a", "b"}) is part of it.
            before = text[max(0, i - 40):i].rstrip()
            block = before.endswith((")", "else", "do", "try")) or before == "" or before.endswith(("{", "}", ";"))
            braces.append(block)
            if block:
                flush()
            else:
                statement.append(("code", "{"))
            i += 1
        elif c == "}":
            if (braces.pop() if braces else True):
                flush()
            else:
                statement.append(("code", "}"))
            i += 1
        else:
            j = i
            while j < n and text[j] not in "\n/'\";{}":
                j += 1
            statement.append(("code", text[i:max(j, i + 1)]))
            i = max(j, i + 1)
    flush()
    for k, (l, t) in enumerate(comment_lines):
        if "gst-launch-1.0" in t:  # its continuation lines follow it in comment_lines
            gst_launch_block([x for _, x in comment_lines[k:k + 8]], rel, l)
    for m in re.finditer(r'(?:factory_make|factory_find|\bmake)\s*\(\s*"([^"]+)"', text):
        strong_elements.add(m.group(1), (rel, text.count("\n", 0, m.start()) + 1))
    for m in re.finditer(r'g_find_program_in_path\s*\(\s*"([^"]+)"', text):
        strong_programs.add(m.group(1), (rel, text.count("\n", 0, m.start()) + 1))


def gst_launch_block(block, rel, first_line):
    text = block[0][block[0].index("gst-launch-1.0"):]
    k = 0
    while text.rstrip().endswith("\\") and k + 1 < len(block):
        k += 1
        text = text.rstrip()[:-1] + " " + re.sub(r"^\s*(\*|//|#)?", "", block[k])
    text = re.split(r"\s(?:\||&&|\|\||;|>)\s|`", text)[0]
    add_pipeline(text, (rel, first_line))


def c_statement(rel, items):
    """Joins the literals of one statement: adjacent ones directly, pieces around run-time
    values with a hole; commas start a new group."""
    groups, between, first_line = [], "", None
    code_before_first = ""
    for item in items:
        if item[0] == "code":
            between += item[1]
            if not groups:
                code_before_first += item[1]
            continue
        _, value, line = item
        if first_line is None:
            first_line = line
        sep = between.strip()
        if not groups or sep.endswith(",") or sep.startswith(","):
            groups.append(value)
        else:
            groups[-1] += ("" if sep == "" else f" {HOLE} ") + value
        between = ""
        # bare words: factory-name lists, catalogue entries, property values
        add_bare_word(value, (rel, line))
    if not groups:
        return
    add_literal_groups(groups, (rel, first_line))
    # The program a command line or argument vector starts with.
    before = code_before_first.rstrip()
    if re.search(r"(popen|run_capture|run_command|\brun|g_spawn_command_line_sync|system)\s*\(\s*\{?$", before):
        words = groups[0].split()
        if words and PROGRAM_NAME.match(words[0]):
            weak_programs.add(words[0], (rel, first_line))


def scan_python(rel, text):
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return
    logical = []
    for tok in tokens:
        logical.append(tok)
        if tok.type in (tokenize.NEWLINE, tokenize.ENDMARKER):
            python_statement(rel, logical)
            logical = []
        elif tok.type == tokenize.COMMENT and "gst-launch-1.0" in tok.string:
            gst_launch_block([tok.string], rel, tok.start[0])
    for m in re.finditer(r'ElementFactory\.(?:make|find)\s*\(\s*["\']([^"\']+)["\']', text):
        strong_elements.add(m.group(1), (rel, text.count("\n", 0, m.start()) + 1))
    for m in re.finditer(r'shutil\.which\s*\(\s*["\']([^"\']+)["\']', text):
        strong_programs.add(m.group(1), (rel, text.count("\n", 0, m.start()) + 1))


def python_string_value(token):
    m = re.match(r"(?is)^([rbuf]*)('''|\"\"\"|'|\")(.*)\2$", token)
    if not m:
        return None, False
    prefix, quote, body = m.groups()
    if "f" in prefix.lower():
        body = re.sub(r"\{\{|\}\}", "", body)
        body = re.sub(r"\{[^{}]*\}", f" {HOLE} ", body)
    if "r" not in prefix.lower():
        body = body.replace("\\n", " ").replace("\\t", " ").replace('\\"', '"').replace("\\'", "'")
    return body, len(quote) == 3


def python_statement(rel, toks):
    strings = [t for t in toks if t.type == tokenize.STRING]
    if not strings:
        return
    layout = (tokenize.STRING, tokenize.NEWLINE, tokenize.NL, tokenize.INDENT, tokenize.DEDENT, tokenize.COMMENT,
              tokenize.ENDMARKER)
    # A docstring (a lone triple-quoted string): only its gst-launch lines count.
    if len(strings) == 1 and re.match(r"(?is)^[rbuf]*('\'\'|\"\"\")", strings[0].string) and \
            all(t.type in layout for t in toks):
        block = strings[0].string.split("\n")
        for k, l in enumerate(block):
            if "gst-launch-1.0" in l:
                gst_launch_block(block[k:k + 8], rel, strings[0].start[0] + k)
        return
    groups, between, first_line = [], [], None
    for t in toks:
        if t.type != tokenize.STRING:
            if t.type not in (tokenize.NL, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT):
                between.append(t.string)
            continue
        value, triple = python_string_value(t.string)
        if value is None:
            continue
        if first_line is None:
            first_line = t.start[0]
        sep = "".join(between).strip()
        # The first string of a list: a command's program ([prog, args...]).
        if re.search(r"(^|[\s,(=+:\[])\[$", sep) and not triple and PROGRAM_NAME.match(value.strip()):
            weak_programs.add(value.strip(), (rel, t.start[0]))
        if not groups or sep.endswith(",") or sep.startswith(","):
            groups.append(value)
        else:
            groups[-1] += ("" if sep == "" else f" {HOLE} ") + value
        add_bare_word(value, (rel, t.start[0]))
        between = []
    if groups:
        add_literal_groups(groups, (rel, first_line))


def shell_logical_lines(text):
    out, buf, start = [], "", None
    for k, line in enumerate(text.split("\n"), 1):
        stripped = line.lstrip()
        if stripped.startswith("#") and not buf:
            out.append((k, line, True))
            continue
        if start is None:
            start = k
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        out.append((start, buf + line, False))
        buf, start = "", None
    if buf:
        out.append((start, buf, False))
    return out


def scan_shell(rel, text):
    lines = shell_logical_lines(text)
    functions = set(re.findall(r"^\s*(?:function\s+)?([A-Za-z_][A-Za-z0-9_-]*)\s*\(\)", text, re.M))
    heredoc_end = None
    for line_no, line, is_comment in lines:
        if heredoc_end is not None:
            if line.strip() == heredoc_end:
                heredoc_end = None
            continue
        m = re.search(r"<<-?\s*['\"]?([A-Za-z_]+)['\"]?", line)
        if m and not is_comment:
            heredoc_end = m.group(1)
            line = line[:m.start()]
        if "gst-launch-1.0" in line:
            gst_launch_block([line], rel, line_no)
        if is_comment:
            continue
        # quoted pipeline descriptions
        for q in re.findall(r"\"((?:[^\"\\]|\\.)*)\"|'([^']*)'", line):
            value = q[0] or q[1]
            add_pipeline(value, (rel, line_no))
        shell_commands(rel, line_no, line, functions)


def shell_code(line):
    """A shell line reduced to what can run commands: quoted text, arithmetic, tests,
    parameter expansions and case patterns replaced by a placeholder; the command
    substitutions inside double quotes returned as lines of their own."""
    extra = []
    code = re.sub(r"'[^']*'", " Q ", line)
    code = re.sub(r"\$\(\((?:[^()]|\([^()]*\))*\)\)", " Q ", code)   # $(( arithmetic ))

    def quoted(m):
        extra.extend(re.findall(r"\$\(([^()]*(?:\([^()]*\)[^()]*)*)\)", m.group(0)))
        return " Q "
    code = re.sub(r'"(?:[^"\\]|\\.)*"', quoted, code)
    code = re.sub(r"(?:^|(?<=[\s;]))#.*$", "", code)                   # comment
    code = re.sub(r"\$\{[^{}]*\}", " Q ", code)                         # ${parameter}
    code = re.sub(r"\(\((?:[^()]|\([^()]*\))*\)\)", " Q ", code)        # (( arithmetic ))
    code = re.sub(r"\[\[.*?\]\]|(?:^|(?<=[\s;(]))\[\s.*?\s\](?=[\s;)]|$)", " Q ", code)  # tests
    code = re.sub(r"[A-Za-z_][A-Za-z0-9_]*\+?=\([^()]*\)", " Q ", code)  # array=( ... )
    # case patterns: "word|word)" at the start or after "in" / ";;"
    code = re.sub(r"(?:^|(?<=\bin)|(?<=;;))\s*\(?[^\s()|;]+(?:\|[^\s()|;]+)*\)", " ; ", code)
    return code, extra


def shell_commands(rel, line_no, line, functions):
    code, extra = shell_code(line)
    for inner in extra:
        shell_commands(rel, line_no, inner, functions)
    # Command position: start of line, after | || && ; ( $( ` and the keywords.
    tokens = re.findall(r"\$\(|\|\||&&|;;|[|;()`&]|[^\s|;()`&]+", code)
    expect = True
    after_prefix = False
    for tok in tokens:
        if tok in ("|", "||", "&&", ";", ";;", "(", "$(", "`", "&"):
            expect, after_prefix = True, False
            continue
        if tok == ")":
            expect = False
            continue
        if not expect:
            continue
        if re.match(r"^[A-Za-z_][A-Za-z0-9_]*(\[[^]]*\])?\+?=", tok):
            continue  # VAR=value before a command
        if tok in ("if", "then", "else", "elif", "do", "while", "until", "!", "{", "}", "exec", "time", "nice",
                   "sudo", "command", "env", "nohup", "xargs"):
            continue
        if tok == "Q":  # a quoted command ("$B/prog"): not a name to check
            expect = False
            continue
        if after_prefix and re.match(r"^-|^[0-9.]+[smh]?$", tok):
            continue  # options and durations of timeout/ionice
        if tok in ("timeout", "ionice", "taskset", "setsid", "flock"):
            weak_programs.add(tok, (rel, line_no))
            after_prefix = True
            continue
        expect = False
        if "$" in tok or "/" in tok or tok in functions or tok in SHELL_WORDS or tok.startswith("-"):
            continue
        if PROGRAM_NAME.match(tok):
            strong_programs.add(tok, (rel, line_no))


def scan_meson(rel, text, root):
    for m in re.finditer(r"find_program\(([^)]*)\)", text):
        args = re.split(r",\s*\w+\s*:", m.group(1))[0]  # positional arguments only
        for name in re.findall(r"'([^']+)'", args):
            here = os.path.join(root, os.path.dirname(rel), name)
            if "/" not in name and not os.path.exists(here):  # a program, not a file of the tree
                strong_programs.add(name, (rel, text.count("\n", 0, m.start()) + 1))


def kind(path):
    ext = os.path.splitext(path)[1]
    if ext in C_EXT:
        return "c"
    if ext == ".py":
        return "py"
    if os.path.basename(path) == "meson.build":
        return "meson"
    if ext in ("", ".sh"):
        try:
            with open(path, "rb") as f:
                first = f.readline(200)
        except OSError:
            return None
        if first.startswith(b"#!"):
            if b"python" in first:
                return "py"
            if b"sh" in first:
                return "sh"
    return None


def scan_tree(root):
    files = 0
    for top in SCAN_DIRS:
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, top)):
            rel_dir = os.path.relpath(dirpath, root)
            dirnames[:] = sorted(d for d in dirnames
                                 if os.path.join(rel_dir, d) not in SKIP and not d.startswith(".")
                                 and d != "node_modules")
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, root)
                if rel in SKIP:
                    continue
                k = kind(path)
                if not k:
                    continue
                try:
                    with open(path, encoding="utf-8") as f:
                        text = f.read()
                except (OSError, UnicodeDecodeError):
                    continue
                files += 1
                texts[rel] = text
                if k == "meson":
                    scan_meson(rel, text, root)
                else:
                    {"c": scan_c, "py": scan_python, "sh": scan_shell}[k](rel, text)
    return files


# ---- what the project itself registers ---------------------------------------------

def grep_sources(root, folder, pattern):
    """Every first group of `pattern` in the C/C++ sources under root/folder."""
    names = set()
    for dirpath, _, filenames in os.walk(os.path.join(root, folder)):
        for name in filenames:
            if os.path.splitext(name)[1] in C_EXT:
                with open(os.path.join(dirpath, name), encoding="utf-8") as f:
                    names |= set(re.findall(pattern, f.read()))
    return names


def our_elements(root):
    return grep_sources(root, "gst", r'gst_element_register\s*\(\s*\w+\s*,\s*"([^"]+)"')


def test_doubles(root):
    return grep_sources(root, "tests", r'register_hardware_double\s*\(\s*"([^"]+)"')


def catalog(root):
    """(factory, hardware, debian_package) of every encoder catalogue entry."""
    with open(os.path.join(root, "lib/ccm/catalog/catalog.cpp"), encoding="utf-8") as f:
        text = f.read()
    out = []
    for m in re.finditer(r'\.factory\s*=\s*"([^"]+)".*?\.vendors\s*=\s*([^,]+),.*?\.debian_package\s*=\s*"([^"]*)"',
                         text, re.S):
        out.append((m.group(1), m.group(2).strip() != "kVendorNone", m.group(3)))
    return out


def element_package_table(root):
    """The element -> Debian package table of lib/ccm/catalog/catalog.cpp (kElementPackages)."""
    with open(os.path.join(root, "lib/ccm/catalog/catalog.cpp"), encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"kElementPackages\[\]\s*=\s*\{(.*?)\n\};", text, re.S)
    if not m:
        return None
    start = text.count("\n", 0, m.start(1)) + 1
    table = {}
    for k, line in enumerate(m.group(1).split("\n")):
        for e, p in re.findall(r'\{\s*"([^"]+)"\s*,\s*"([^"]+)"\s*\}', line):
            table[e] = (p, start + k)
    return table


def allowed_absent(name):
    for pattern, why in HARDWARE_OR_OPTIONAL.items():
        if fnmatch.fnmatchcase(name, pattern):
            return why
    return None


# ---- Debian ---------------------------------------------------------------------------

def listed_packages(root):
    """This release's packages (scripts/install-deps --list: the lines marked for other
    releases left out) -> their line in scripts/debian-packages.txt."""
    text = subprocess.run([os.path.join(root, "scripts/install-deps"), "--list"], capture_output=True,
                          text=True, timeout=30, check=True).stdout
    return {name: int(k) for k, name in (line.split() for line in text.splitlines())}


def installed_packages():
    """Installed packages: name -> (part of every Debian system, [[dependency alternatives]]),
    and virtual package -> the installed packages that provide it."""
    fmt = "${Package}\t${db:Status-Abbrev}\t${Essential}\t${Priority}\t${Pre-Depends}, ${Depends}\t${Provides}\n"
    out = subprocess.run(["dpkg-query", "-W", "-f", fmt], capture_output=True, text=True, timeout=60).stdout
    pkgs, providers = {}, {}
    for line in out.splitlines():
        fields = line.split("\t")
        if len(fields) < 6 or not fields[1].startswith("ii"):
            continue
        name, _, essential, priority, depends, provides = fields[:6]
        deps = []
        for group in depends.split(","):
            alts = [re.sub(r"\(.*?\)|:\w+", "", a).strip() for a in group.split("|")]
            alts = [a for a in alts if a]
            if alts:
                deps.append(alts)
        pkgs[name] = (essential == "yes" or priority == "required", deps)
        for p in provides.split(","):
            p = re.sub(r"\(.*?\)|:\w+", "", p).strip()
            if p:
                providers.setdefault(p, []).append(name)
    return pkgs, providers


def installed_with(listed, pkgs, providers):
    """Packages installed because a listed one is: the listed ones and their dependencies."""
    seen, todo = set(), [p for p in listed if p in pkgs]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        for alts in pkgs[p][1]:
            for a in alts:
                for real in [a] if a in pkgs else providers.get(a, []):
                    if real in pkgs and real not in seen:
                        todo.append(real)
    return seen


def owners(paths):
    """path -> package for the paths dpkg knows (one dpkg -S for all)."""
    if not paths:
        return {}
    r = subprocess.run(["dpkg", "-S"] + sorted(set(paths)), capture_output=True, text=True, timeout=60)
    out = {}
    for line in r.stdout.splitlines():
        if ": " not in line:
            continue
        pkgs, path = line.rsplit(": ", 1)
        if pkgs.startswith("diversion by"):
            continue
        out[path] = pkgs.split(",")[0].split(":")[0].strip()
    return out


def path_variants(path):
    """dpkg knows a file by the path its package ships (merged /usr: /bin/x or /usr/bin/x)."""
    out = [path, os.path.realpath(path)]
    for p in list(out):
        for a, b in (("/usr/bin/", "/bin/"), ("/usr/sbin/", "/sbin/"), ("/usr/lib/", "/lib/")):
            if p.startswith(a):
                out.append(b + p[len(a):])
            elif p.startswith(b):
                out.append(a + p[len(b):])
    return list(dict.fromkeys(out))


# ---- the check ----------------------------------------------------------------------

def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "../.."))
    t0 = time.monotonic()
    failures = []
    add_to_list = "add it to scripts/debian-packages.txt (scripts/install-deps installs it)"

    files = scan_tree(root)
    ours = our_elements(root)
    doubles = test_doubles(root)
    entries = catalog(root)
    table = element_package_table(root)
    if not ours or not entries:
        failures.append("could not read the registered elements of gst/ or the catalogue of lib/ccm/catalog")
    if table is None:
        failures.append("lib/ccm/catalog/catalog.cpp: no kElementPackages table (element -> Debian package)")
        table = {}
    catalog_packages = {f: p for f, _, p in entries if p}
    # The table names elements without using them.
    table_lines = {line for _, line in table.values()}
    for name in list(weak_elements.places):
        weak_elements.places[name] = [(f, l) for f, l in weak_elements.places[name]
                                      if not (f == "lib/ccm/catalog/catalog.cpp" and l in table_lines)]
        if not weak_elements.places[name]:
            del weak_elements.places[name]

    try:
        import gi
        gi.require_version("Gst", "1.0")
        from gi.repository import Gst
    except (ImportError, ValueError) as e:
        print(f"FAIL: GStreamer's Python bindings are missing ({e}): python3-gi and python3-gst-1.0, "
              "gir1.2-gstreamer-1.0 in scripts/debian-packages.txt")
        return 1
    Gst.init(None)

    def factory(name):
        return Gst.ElementFactory.find(name)

    def plugin_file(f):
        plugin = f.get_plugin() if f is not None else None
        return plugin.get_filename() if plugin is not None else None

    # Every catalogue entry that may be absent must be said so in HARDWARE_OR_OPTIONAL.
    for name, hardware, package in entries:
        if (hardware or not package) and name not in ours and not allowed_absent(name):
            failures.append(f"catalogue entry {name} ({'hardware' if hardware else 'not in Debian 12'}) is not "
                            "in HARDWARE_OR_OPTIONAL of tests/deps/check_deps.py: add it with the reason")

    # The elements to check.
    used = {}
    for uses, weak in ((strong_elements, False), (weak_elements, True)):
        for name in uses.places:
            if name in ours or name in doubles or name in NOT_ELEMENTS or name in used:
                continue
            found = factory(name)
            if weak and not found and name not in catalog_packages and name not in table:
                continue  # a word, not an element (or one that neither this registry nor our tables know)
            if found is not None and not plugin_file(found):
                continue  # built into libgstreamer itself (bin, pipeline)
            used[name] = (found, (strong_elements if name in strong_elements.places else weak_elements).where(name))
    for name in sorted(used):
        found, where = used[name]
        if found is None and allowed_absent(name):
            del used[name]

    plugin_files = {}  # of the elements used and of those in the table
    for name in set(used) | set(table):
        path = plugin_file(used[name][0] if name in used else factory(name))
        if path:
            plugin_files[name] = path
    all_programs = {}
    for uses in (strong_programs, weak_programs):
        for name, places in uses.places.items():
            if all(f in OPTIONAL_TOOLS for f, _ in places):
                continue
            all_programs.setdefault(name, uses.where(name))
    # Where each program is: on PATH, and in Debian's own folders (PATH may start with
    # something else, e.g. a pyenv shim for python3).
    program_paths = {}
    for name in set(PROGRAMS) | set(all_programs):
        found = [shutil.which(name)] + [os.path.join(d, name) for d in ("/usr/bin", "/usr/sbin", "/bin", "/sbin")]
        found = [p for p in dict.fromkeys(found) if p and os.path.isfile(p) and os.access(p, os.X_OK)]
        if found:
            program_paths[name] = found
    every_path = [v for p in plugin_files.values() for v in path_variants(p)] + \
                 [v for ps in program_paths.values() for p in ps for v in path_variants(p)]
    owner = owners(every_path)

    def package_of(path):
        for v in path_variants(path):
            if v in owner:
                return owner[v]
        return None

    def program_package(name):
        """(path, Debian package) of a program: the first of its places dpkg knows."""
        paths = program_paths.get(name, [])
        for p in paths:
            if package_of(p):
                return p, package_of(p)
        return (paths[0] if paths else None), None

    listed = listed_packages(root)
    pkgs, providers = installed_packages()
    with_list = installed_with(listed, pkgs, providers)

    def covered(package):
        return package in with_list or (package in pkgs and pkgs[package][0])

    for name in sorted(used):
        found, where = used[name]
        if found is None:
            package = table.get(name, (catalog_packages.get(name), 0))[0]
            hint = (f"its Debian package {package} is listed but not installed: run scripts/install-deps"
                    if package in listed else
                    f"its Debian package is {package}: {add_to_list} and install it" if package else
                    "no Debian package known for it: find it (apt-file search, packages.debian.org), add it to "
                    "scripts/debian-packages.txt and to kElementPackages in lib/ccm/catalog/catalog.cpp, or to "
                    "HARDWARE_OR_OPTIONAL in tests/deps/check_deps.py with the reason it may be absent")
            failures.append(f"GStreamer element {name} (used at {where}) is not in the registry: {hint}")
            continue
        path = plugin_files.get(name)
        package = package_of(path) if path else None
        if not package:
            failures.append(f"GStreamer element {name} (used at {where}): its plugin {path} belongs to no Debian "
                            "package (built by hand?): a fresh machine will not have it")
        elif not covered(package):
            failures.append(f"GStreamer element {name} (used at {where}) comes from Debian package {package} "
                            f"({os.path.basename(path)}), which scripts/debian-packages.txt does not install: "
                            f"{add_to_list}")
        expected = table.get(name, (None, 0))[0] or catalog_packages.get(name)
        if package and expected and expected != package:
            failures.append(f"lib/ccm/catalog/catalog.cpp says {name} comes from {expected}, dpkg -S says {package}")

    # The demos name the package of a missing element: tools/ must be covered by the table.
    for name, (found, where) in sorted(used.items()):
        places = strong_elements.places.get(name, []) + weak_elements.places.get(name, [])
        if any(f.startswith("tools/") for f, _ in places) and name not in table and name not in catalog_packages:
            failures.append(f"element {name} (used at {where}) has no entry in kElementPackages of "
                            "lib/ccm/catalog/catalog.cpp: the demos could not say what to install when it is missing")
    # Every table entry that is installed matches dpkg -S.
    for name, (package, line) in sorted(table.items()):
        if name in used or name not in plugin_files:
            continue  # checked above, or not installed here
        actual = package_of(plugin_files[name])
        if actual and actual != package:
            failures.append(f"lib/ccm/catalog/catalog.cpp:{line}: {name} comes from {actual} (dpkg -S), "
                            f"not {package}")
    for package in sorted(listed):
        if package not in pkgs:
            failures.append(f"scripts/debian-packages.txt:{listed[package]}: {package} is not installed "
                            "(run scripts/install-deps)")

    # Programs: the list covers what the scan finds.
    for name in sorted(all_programs):
        where = all_programs[name]
        if name in PROGRAMS or name in OPTIONAL_PROGRAMS:
            continue
        path, package = program_package(name)
        if path is None:
            if name in strong_programs.places:
                failures.append(f"program {name} (run at {where}) is not on PATH and not in PROGRAMS or "
                                "OPTIONAL_PROGRAMS of tests/deps/check_deps.py: add it to one, with its Debian "
                                "package")
            continue
        if package and package in pkgs and pkgs[package][0]:
            continue  # part of every Debian system (coreutils, grep, sed, util-linux ...)
        failures.append(f"program {name} (run at {where}; {path}) comes from "
                        f"{'Debian package ' + package if package else 'no Debian package'}, which is not part of "
                        f"a minimal Debian: add it to PROGRAMS of tests/deps/check_deps.py"
                        + (f" and {package} to scripts/debian-packages.txt" if package else ""))
    def named_at(name):
        pattern = re.compile(r"(?<![\w./-])" + re.escape(name) + r"(?![\w-])")
        for rel, text in texts.items():
            m = pattern.search(text)
            if m:
                return f"{rel}:{text.count(chr(10), 0, m.start()) + 1}"
        return "PROGRAMS of tests/deps/check_deps.py"

    for name, package in sorted(PROGRAMS.items()):
        where = all_programs.get(name) or named_at(name)
        path, actual = program_package(name)
        if path is None:
            failures.append(f"program {name} (run at {where}) is not on PATH: its Debian package is {package}: "
                            f"{add_to_list} and install it")
        elif not actual:
            failures.append(f"program {name} (run at {where}) is {path}, which belongs to no Debian package: "
                            f"a fresh machine gets it from {package}: {add_to_list}")
        elif not covered(actual):
            failures.append(f"program {name} (run at {where}; {path}) comes from Debian package {actual}, which "
                            f"scripts/debian-packages.txt does not install: {add_to_list}")

    if os.environ.get("CHECK_DEPS_VERBOSE"):
        for name in sorted(used):
            print(f"element {name}: {plugin_files.get(name)} ({used[name][1]})")
        for name in sorted(set(PROGRAMS) | set(all_programs)):
            print(f"program {name}: {program_package(name)} ({all_programs.get(name, 'PROGRAMS')})")
    elapsed = time.monotonic() - t0
    checked = len(used)
    print(f"check_deps: {files} files scanned, {checked} elements and "
          f"{len(PROGRAMS) + len([p for p in all_programs if p not in PROGRAMS])} programs checked against "
          f"{len(listed)} listed Debian packages in {elapsed:.1f} s")
    for f in failures:
        print("FAIL: " + f)
    if failures:
        print(f"{len(failures)} dependency problem(s): a fresh Debian 12 machine (scripts/install-deps) "
              "would not have what the tree uses")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
