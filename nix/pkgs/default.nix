# The bundled package set: a small nixpkgs-shaped set for offline use and
# tests, built from the binaries of the host's Debian 12 (bookworm, x86_64)
# installation. It is NOT nixpkgs: point Nixery at real nixpkgs with
# NIXERY_CHANNEL, NIXERY_PKGS_REPO or NIXERY_PKGS_PATH for real images.
#
#   import ./nix/pkgs { system = "x86_64-linux"; }
#
# returns an attribute set of derivations named as in nixpkgs. Each package
# copies Debian files into its output and rewrites the ELF interpreter and
# RUNPATH of every binary and library to the store paths of its
# dependencies (builder.sh), so Nix records the same kind of runtime
# references as for nixpkgs: curl -> libcurl's friends -> openssl -> glibc.
# Shared libraries live in store paths of their own, so images share them.
#
# Store paths follow the host's files: each derivation carries a
# fingerprint of dpkg's md5sums lists for the Debian packages it copies
# from, so a Debian update gives new store paths, never new bytes under an
# old path.
#
# The `libs` of a package are the packages providing the DT_NEEDED
# libraries of its ELF files (read with `readelf -d` on Debian 12; glibc is
# always implied). The Debian packages the files come from are installed by
# .ci/setup.
{ system ? "x86_64-linux", ... }:

let
  inherit (builtins) attrNames concatStringsSep;

  # What differs between the two systems: where the Debian files are (the
  # host's own for x86_64; for aarch64 a tree of Debian 12's arm64 packages
  # that .ci/setup-arm64 unpacks, never installed), Debian's multiarch
  # directory, the dynamic loader's name and where dpkg's md5sums lists are.
  arm64Root =
    let e = builtins.getEnv "NIXERY_DEBIAN_ARM64_ROOT";
    in (if e != "" then e else "/var/lib/nixery/debian-arm64") + "/fs";
  arches = {
    x86_64-linux = {
      root = ""; triplet = "x86_64-linux-gnu"; loader = "ld-linux-x86-64.so.2";
      md5sums = deb: [ "/var/lib/dpkg/info/${deb}:amd64.md5sums" "/var/lib/dpkg/info/${deb}.md5sums" ];
      missing = deb: "the Debian package ${deb} is not installed on this host; run .ci/setup";
      glibcExtra = [ "libmvec.so.1" ];
    };
    aarch64-linux = {
      root = arm64Root; triplet = "aarch64-linux-gnu"; loader = "ld-linux-aarch64.so.1";
      md5sums = deb: [ "${arm64Root}/var/lib/dpkg/info/${deb}.md5sums" ];
      missing = deb: "the Debian 12 arm64 package ${deb} is not unpacked in ${arm64Root}; run .ci/setup (it calls .ci/setup-arm64)";
      glibcExtra = [ ];
    };
  };
  arch = arches.${system};
in

if !(arches ? ${system}) then
  throw "nixery-unsupported-system: the bundled package set copies Debian 12 binaries for x86_64-linux and aarch64-linux and cannot provide ${system}"
else if system == "aarch64-linux" && !builtins.pathExists "${arm64Root}/usr/lib/aarch64-linux-gnu/libc.so.6" then
  throw "nixery-unsupported-system: the bundled package set builds aarch64-linux from Debian 12's arm64 packages, which are not unpacked in ${arm64Root}; run .ci/setup (it calls .ci/setup-arm64) or set NIXERY_DEBIAN_ARM64_ROOT"
else

let
  # L is Debian's multiarch library directory (under the files' root for
  # aarch64: builder.sh prefixes every source path with srcRoot).
  L = "/usr/lib/${arch.triplet}";
  libs' = names: concatStringsSep " " (map (n: "${L}/${n}") names);
  lines = concatStringsSep "\n";
  kv = set: map (k: "${k} ${set.${k}}") (attrNames set);

  # fingerprint identifies the host files a package copies: the hashes of
  # dpkg's md5sums lists of its Debian packages (debs) and of other host
  # files it copies that dpkg does not list (hostFiles). It is part of the
  # derivation, so a store path changes exactly when the copied files do,
  # and a missing Debian package is an evaluation error naming it.
  fingerprint = fromHost: debs: hostFiles:
    let
      candidates = deb:
        if fromHost then arches.x86_64-linux.md5sums deb else arch.md5sums deb;
      md5sums = deb:
        let found = builtins.filter builtins.pathExists (candidates deb);
        in
        if found != [ ] then builtins.hashFile "sha256" (builtins.head found)
        else throw "nixery bundled package set: ${(if fromHost then arches.x86_64-linux else arch).missing deb}";
    in
    builtins.hashString "sha256" (concatStringsSep "\n"
      (map (d: "${d} ${md5sums d}") debs ++ map (f: "${f} ${builtins.hashFile "sha256" f}") hostFiles));

  # mk builds one package with builder.sh. debs: the Debian packages its
  # files come from; copy: lines "DESTDIR SRC...";
  # libs: dependencies whose lib/ goes into RUNPATH; links: LINK = TARGET;
  # wrap: PROG = { VAR = VALUE; } (@out@ stands for the output path);
  # shebangs: interpreter basename = store path; remove: globs under $out;
  # fromHost: the files are data (certificates, /etc/services) that the
  # host's own installation provides for every system.
  #
  # For aarch64-linux the derivations are aarch64-linux derivations whose
  # builder (bash, cp, patchelf: the host's) runs on the host, which Nix
  # accepts with `extra-platforms = aarch64-linux` (package nix adds it
  # for the bundled set): nothing is emulated while building.
  mk =
    { pname, version, debs, hostFiles ? [ ], copy ? [ ], libs ? [ ], links ? { }
    , wrap ? { }, shebangs ? { }, remove ? [ ], postInstall ? "", isGlibc ? false
    , fromHost ? false }:
    (derivation ({
      name = "${pname}-${version}";
      inherit system;
      builder = "/bin/bash";
      args = if system == "x86_64-linux" then [ ./builder.sh ] else [ ./builder-aarch64.sh ./builder.sh ];
      PATH = "/usr/bin:/bin";
      host = fingerprint fromHost debs hostFiles;
      copy = lines copy;
      remove = lines remove;
      links = lines (kv links);
      libDirs = concatStringsSep ":"
        (map (d: "${d}/lib") ((if isGlibc then [ ] else [ glibc ]) ++ libs));
      interp = if isGlibc then "" else "${glibc}/lib/${arch.loader}";
      shebangs = lines (kv shebangs);
      inherit postInstall;
      wrap = lines (map
        (p: "${p} ${concatStringsSep " " (map (v: "${v}=${wrap.${p}.${v}}") (attrNames wrap.${p}))}")
        (attrNames wrap));
      shell = if wrap == { } then "" else "${bashInteractive}/bin/bash";
    } // (if system == "x86_64-linux" then { } else {
      # Only aarch64's derivations have these, so that x86_64's store
      # paths stay what they were.
      srcRoot = if fromHost then "" else arch.root;
      loaderName = arch.loader;
    }))) // { inherit pname version; };

  sh = { sh = "${bashInteractive}/bin/bash"; bash = "${bashInteractive}/bin/bash"; };

  # Libraries.

  glibc = mk {
    pname = "glibc"; version = "2.36"; isGlibc = true;
    debs = [ "libc6" ];
    copy = [
      "lib ${libs' ([ arch.loader "libc.so.6" "libm.so.6" ] ++ arch.glibcExtra ++ [
        "libresolv.so.2" "libpthread.so.0" "libdl.so.2" "librt.so.1" "libutil.so.1"
        "libanl.so.1" "libnss_files.so.2" "libnss_dns.so.2" "libBrokenLocale.so.1" ])}"
    ];
  };
  libxcrypt = mk { pname = "libxcrypt"; version = "4.4.33"; debs = [ "libcrypt1" ]; copy = [ "lib ${L}/libcrypt.so.1" ]; };
  zlib = mk { pname = "zlib"; version = "1.2.13"; debs = [ "zlib1g" ]; copy = [ "lib ${L}/libz.so.1" ]; };
  openssl = mk {
    pname = "openssl"; version = "3.0.19";
    debs = [ "libssl3" "openssl" ];
    copy = [ "lib ${libs' [ "libssl.so.3" "libcrypto.so.3" ]}" "bin /usr/bin/openssl" ];
  };
  ncurses = mk {
    pname = "ncurses"; version = "6.4";
    debs = [ "libtinfo6" "libncursesw6" "ncurses-base" ];
    copy = [
      "lib ${libs' [ "libtinfo.so.6" "libncursesw.so.6" "libpanelw.so.6" ]}"
      "share/terminfo /lib/terminfo/*"
    ];
  };
  readline = mk {
    pname = "readline"; version = "8.2"; libs = [ ncurses ];
    debs = [ "libreadline8" ];
    copy = [ "lib ${libs' [ "libreadline.so.8" "libhistory.so.8" ]}" ];
  };
  pcre2 = mk { pname = "pcre2"; version = "10.42"; debs = [ "libpcre2-8-0" ]; copy = [ "lib ${L}/libpcre2-8.so.0" ]; };
  libunistring = mk { pname = "libunistring"; version = "1.0"; debs = [ "libunistring2" ]; copy = [ "lib ${L}/libunistring.so.2" ]; };
  libidn2 = mk { pname = "libidn2"; version = "2.3.3"; debs = [ "libidn2-0" ]; libs = [ libunistring ]; copy = [ "lib ${L}/libidn2.so.0" ]; };
  libpsl = mk { pname = "libpsl"; version = "0.21.2"; debs = [ "libpsl5" ]; libs = [ libunistring libidn2 ]; copy = [ "lib ${L}/libpsl.so.5" ]; };
  nghttp2 = mk { pname = "nghttp2"; version = "1.52.0"; debs = [ "libnghttp2-14" ]; copy = [ "lib ${L}/libnghttp2.so.14" ]; };
  gmp = mk { pname = "gmp"; version = "6.2.1"; debs = [ "libgmp10" ]; copy = [ "lib ${L}/libgmp.so.10" ]; };
  nettle = mk {
    pname = "nettle"; version = "3.8.1"; libs = [ gmp ];
    debs = [ "libnettle8" "libhogweed6" ];
    copy = [ "lib ${libs' [ "libnettle.so.8" "libhogweed.so.6" ]}" ];
  };
  libtasn1 = mk { pname = "libtasn1"; version = "4.19.0"; debs = [ "libtasn1-6" ]; copy = [ "lib ${L}/libtasn1.so.6" ]; };
  libffi = mk { pname = "libffi"; version = "3.4.4"; debs = [ "libffi8" ]; copy = [ "lib ${L}/libffi.so.8" ]; };
  p11-kit = mk { pname = "p11-kit"; version = "0.24.1"; debs = [ "libp11-kit0" ]; libs = [ libffi ]; copy = [ "lib ${L}/libp11-kit.so.0" ]; };
  gnutls = mk {
    pname = "gnutls"; version = "3.7.9";
    debs = [ "libgnutls30" ];
    libs = [ p11-kit libidn2 libunistring libtasn1 nettle gmp ];
    copy = [ "lib ${L}/libgnutls.so.30" ];
  };
  rtmpdump = mk {
    pname = "rtmpdump"; version = "2.4"; libs = [ gnutls nettle gmp zlib ];
    debs = [ "librtmp1" ];
    copy = [ "lib ${L}/librtmp.so.1" ];
  };
  libssh2 = mk { pname = "libssh2"; version = "1.10.0"; debs = [ "libssh2-1" ]; libs = [ openssl zlib ]; copy = [ "lib ${L}/libssh2.so.1" ]; };
  keyutils = mk { pname = "keyutils"; version = "1.6.3"; debs = [ "libkeyutils1" ]; copy = [ "lib ${L}/libkeyutils.so.1" ]; };
  krb5 = mk {
    pname = "krb5"; version = "1.20.1"; libs = [ keyutils ];
    debs = [ "libgssapi-krb5-2" "libkrb5-3" "libk5crypto3" "libkrb5support0" "libcom-err2" ];
    copy = [
      "lib ${libs' [ "libgssapi_krb5.so.2" "libkrb5.so.3" "libk5crypto.so.3"
        "libkrb5support.so.0" "libcom_err.so.2" ]}"
    ];
  };
  cyrus_sasl = mk { pname = "cyrus-sasl"; version = "2.1.28"; debs = [ "libsasl2-2" ]; copy = [ "lib ${L}/libsasl2.so.2" ]; };
  openldap = mk {
    pname = "openldap"; version = "2.5.13"; libs = [ cyrus_sasl gnutls ];
    debs = [ "libldap-2.5-0" ];
    copy = [ "lib ${libs' [ "libldap-2.5.so.0" "liblber-2.5.so.0" ]}" ];
  };
  brotli = mk {
    pname = "brotli"; version = "1.0.9";
    debs = [ "libbrotli1" ];
    copy = [ "lib ${libs' [ "libbrotlicommon.so.1" "libbrotlidec.so.1" "libbrotlienc.so.1" ]}" ];
  };
  lz4 = mk { pname = "lz4"; version = "1.9.4"; debs = [ "liblz4-1" ]; copy = [ "lib ${L}/liblz4.so.1" ]; };
  libselinux = mk { pname = "libselinux"; version = "3.4"; debs = [ "libselinux1" ]; libs = [ pcre2 ]; copy = [ "lib ${L}/libselinux.so.1" ]; };
  attr = mk { pname = "attr"; version = "2.5.1"; debs = [ "libattr1" ]; copy = [ "lib ${L}/libattr.so.1" ]; };
  acl = mk { pname = "acl"; version = "2.3.1"; debs = [ "libacl1" ]; libs = [ attr ]; copy = [ "lib ${L}/libacl.so.1" ]; };
  oniguruma = mk { pname = "oniguruma"; version = "6.9.8"; debs = [ "libonig5" ]; copy = [ "lib ${L}/libonig.so.5" ]; };
  libuuid = mk { pname = "libuuid"; version = "2.38.1"; debs = [ "libuuid1" ]; copy = [ "lib ${L}/libuuid.so.1" ]; };
  expat = mk { pname = "expat"; version = "2.5.0"; debs = [ "libexpat1" ]; copy = [ "lib ${L}/libexpat.so.1" ]; };
  libmd = mk { pname = "libmd"; version = "1.0.4"; debs = [ "libmd0" ]; copy = [ "lib ${L}/libmd.so.0" ]; };
  libbsd = mk { pname = "libbsd"; version = "0.11.7"; debs = [ "libbsd0" ]; libs = [ libmd ]; copy = [ "lib ${L}/libbsd.so.0" ]; };
  libedit = mk { pname = "libedit"; version = "20221030-3.1"; debs = [ "libedit2" ]; libs = [ ncurses libbsd ]; copy = [ "lib ${L}/libedit.so.2" ]; };
  mpfr = mk { pname = "mpfr"; version = "4.2.0"; debs = [ "libmpfr6" ]; libs = [ gmp ]; copy = [ "lib ${L}/libmpfr.so.6" ]; };
  libsigsegv = mk { pname = "libsigsegv"; version = "2.14"; debs = [ "libsigsegv2" ]; copy = [ "lib ${L}/libsigsegv.so.2" ]; };

  # Programs.

  bashInteractive = mk {
    pname = "bash-interactive"; version = "5.2.15"; libs = [ ncurses ];
    debs = [ "bash" ];
    copy = [ "bin /bin/bash" ];
    links = { "bin/sh" = "bash"; };
  };
  coreutils = mk {
    pname = "coreutils"; version = "9.1"; libs = [ acl attr gmp libselinux ];
    debs = [ "coreutils" ];
    copy = [
      "bin ${concatStringsSep " " (map (p: "/usr/bin/${p}") [
        "[" "arch" "b2sum" "base32" "base64" "basename" "basenc" "cat" "chcon" "chgrp"
        "chmod" "chown" "cksum" "comm" "cp" "csplit" "cut" "date" "dd" "df" "dir"
        "dircolors" "dirname" "du" "echo" "env" "expand" "expr" "factor" "false" "fmt" "fold"
        "groups" "head" "hostid" "id" "install" "join" "link" "ln" "logname" "ls" "md5sum"
        "mkdir" "mkfifo" "mknod" "mktemp" "mv" "nice" "nl" "nohup" "nproc" "numfmt" "od"
        "paste" "pathchk" "pinky" "pr" "printenv" "printf" "ptx" "pwd" "readlink" "realpath"
        "rm" "rmdir" "runcon" "seq" "sha1sum" "sha224sum" "sha256sum" "sha384sum" "sha512sum"
        "shred" "shuf" "sleep" "sort" "split" "stat" "stty" "sum" "sync" "tac" "tail"
        "tee" "test" "timeout" "touch" "tr" "true" "truncate" "tsort" "tty" "uname" "unexpand"
        "uniq" "unlink" "users" "vdir" "wc" "who" "whoami" "yes" ])} /usr/sbin/chroot"
    ];
  };
  moreutils = mk {
    pname = "moreutils"; version = "0.67"; shebangs = { perl = "${perl}/bin/perl"; };
    debs = [ "moreutils" ];
    copy = [
      "bin ${concatStringsSep " " (map (p: "/usr/bin/${p}") [
        "combine" "errno" "ifdata" "ifne" "isutf8" "lckdo" "mispipe" "parallel" "pee"
        "sponge" "ts" "vidir" "vipe" "zrun" ])}"
    ];
  };
  nano = mk {
    pname = "nano"; version = "7.2"; libs = [ ncurses ];
    debs = [ "nano" ];
    copy = [ "bin /bin/nano" "share /usr/share/nano" ];
    wrap = { "bin/nano" = { TERMINFO_DIRS = "${ncurses}/share/terminfo"; }; };
  };
  less = mk {
    pname = "less"; version = "590"; libs = [ ncurses ];
    debs = [ "less" ];
    copy = [ "bin /usr/bin/less /usr/bin/lesskey /usr/bin/lessecho" ];
    wrap = { "bin/less" = { TERMINFO_DIRS = "${ncurses}/share/terminfo"; }; };
  };
  curl = mk {
    pname = "curl"; version = "7.88.1";
    debs = [ "curl" "libcurl4" ];
    libs = [ nghttp2 libidn2 rtmpdump libssh2 libpsl openssl krb5 openldap zstd brotli zlib ];
    copy = [ "bin /usr/bin/curl" "lib ${L}/libcurl.so.4" ];
  };
  jq = mk {
    pname = "jq"; version = "1.6"; libs = [ oniguruma ];
    debs = [ "jq" "libjq1" ];
    copy = [ "bin /usr/bin/jq" "lib ${L}/libjq.so.1" ];
  };
  git = mk {
    pname = "git"; version = "2.39.5"; libs = [ pcre2 zlib ];
    debs = [ "git" ];
    copy = [ "bin /usr/bin/git" "share/git-core /usr/share/git-core/templates" ];
    # As in nixpkgs (sshSupport), git runs the set's ssh for ssh:// remotes,
    # so openssh and its openssl are in git's closure.
    wrap = { "bin/git" = {
      GIT_TEMPLATE_DIR = "@out@/share/git-core/templates";
      GIT_SSH = "${openssh}/bin/ssh";
    }; };
  };
  cacert = mk {
    pname = "nss-cacert"; version = "20250419";
    debs = [ "ca-certificates" ]; fromHost = true; hostFiles = [ "/etc/ssl/certs/ca-certificates.crt" ];
    copy = [ "etc/ssl/certs /etc/ssl/certs/ca-certificates.crt" ];
    links = { "etc/ssl/certs/ca-bundle.crt" = "ca-certificates.crt"; };
  };
  iana-etc = mk {
    pname = "iana-etc"; version = "20230316";
    debs = [ "netbase" ]; fromHost = true; hostFiles = [ "/etc/services" "/etc/protocols" ];
    copy = [ "etc /etc/services /etc/protocols" ];
  };
  hello = mk { pname = "hello"; version = "2.10"; debs = [ "hello" ]; copy = [ "bin /usr/bin/hello" ]; };
  gnugrep = mk {
    pname = "gnugrep"; version = "3.8"; libs = [ pcre2 ]; shebangs = sh;
    debs = [ "grep" ];
    copy = [ "bin /bin/grep /bin/egrep /bin/fgrep" ];
    postInstall = ''sed -i "s|^exec grep |exec $out/bin/grep |" $out/bin/egrep $out/bin/fgrep'';
  };
  gnused = mk { pname = "gnused"; version = "4.9"; debs = [ "sed" ]; libs = [ acl libselinux ]; copy = [ "bin /bin/sed" ]; };
  gawk = mk {
    pname = "gawk"; version = "5.2.1"; libs = [ gmp mpfr readline libsigsegv ];
    debs = [ "gawk" ];
    copy = [ "bin /usr/bin/gawk" ];
    links = { "bin/awk" = "gawk"; };
  };
  findutils = mk {
    pname = "findutils"; version = "4.9.0"; libs = [ libselinux ];
    debs = [ "findutils" ];
    copy = [ "bin /usr/bin/find /usr/bin/xargs" ];
  };
  diffutils = mk {
    pname = "diffutils"; version = "3.8";
    debs = [ "diffutils" ];
    copy = [ "bin /usr/bin/diff /usr/bin/cmp /usr/bin/diff3 /usr/bin/sdiff" ];
  };
  gzip = mk {
    pname = "gzip"; version = "1.12"; shebangs = sh;
    debs = [ "gzip" ];
    copy = [ "bin /bin/gzip /bin/gunzip /bin/zcat" ];
    postInstall = ''sed -i "s|^exec gzip |exec $out/bin/gzip |" $out/bin/gunzip $out/bin/zcat'';
  };
  xz = mk {
    pname = "xz"; version = "5.4.1";
    debs = [ "xz-utils" "liblzma5" ];
    copy = [ "bin /usr/bin/xz" "lib ${L}/liblzma.so.5" ];
    links = { "bin/unxz" = "xz"; "bin/xzcat" = "xz"; };
  };
  bzip2 = mk {
    pname = "bzip2"; version = "1.0.8";
    debs = [ "bzip2" "libbz2-1.0" ];
    copy = [ "bin /bin/bzip2 /bin/bzip2recover" "lib ${L}/libbz2.so.1.0" ];
    links = { "bin/bunzip2" = "bzip2"; "bin/bzcat" = "bzip2"; };
  };
  zstd = mk {
    pname = "zstd"; version = "1.5.4"; libs = [ zlib xz lz4 ];
    debs = [ "zstd" "libzstd1" ];
    copy = [ "bin /usr/bin/zstd" "lib ${L}/libzstd.so.1" ];
    links = { "bin/unzstd" = "zstd"; "bin/zstdcat" = "zstd"; "bin/zstdmt" = "zstd"; };
  };
  gnutar = mk { pname = "gnutar"; version = "1.34"; debs = [ "tar" ]; libs = [ acl libselinux ]; copy = [ "bin /bin/tar" ]; };
  file = mk {
    pname = "file"; version = "5.44"; libs = [ xz bzip2 zlib ];
    debs = [ "file" "libmagic1" "libmagic-mgc" ];
    copy = [ "bin /usr/bin/file" "lib ${L}/libmagic.so.1" "share/misc /usr/lib/file/magic.mgc" ];
    wrap = { "bin/file" = { MAGIC = "@out@/share/misc/magic.mgc"; }; };
  };
  which = mk {
    pname = "which"; version = "5.7"; shebangs = sh;
    debs = [ "debianutils" ];
    copy = [ "bin /usr/bin/which.debianutils" ];
    links = { "bin/which" = "which.debianutils"; };
  };
  tree = mk { pname = "tree"; version = "2.1.0"; debs = [ "tree" ]; copy = [ "bin /usr/bin/tree" ]; };
  sqlite = mk {
    pname = "sqlite"; version = "3.40.1"; libs = [ readline zlib ];
    debs = [ "sqlite3" "libsqlite3-0" ];
    copy = [ "bin /usr/bin/sqlite3" "lib ${L}/libsqlite3.so.0" ];
  };
  openssh = mk {
    pname = "openssh"; version = "9.2p1"; libs = [ libselinux krb5 openssl zlib libedit ];
    debs = [ "openssh-client" ];
    copy = [
      "bin ${concatStringsSep " " (map (p: "/usr/bin/${p}") [
        "ssh" "scp" "sftp" "ssh-add" "ssh-agent" "ssh-keygen" "ssh-keyscan" ])}"
    ];
  };
  wget = mk {
    pname = "wget"; version = "1.21.3";
    debs = [ "wget" ];
    libs = [ pcre2 libuuid libidn2 nettle gnutls zlib libpsl ];
    copy = [ "bin /usr/bin/wget" ];
  };
  perl = mk {
    pname = "perl"; version = "5.36.0"; libs = [ libxcrypt zlib bzip2 ];
    debs = [ "perl-base" "perl-modules-5.36" "libperl5.36" ];
    copy = [
      "bin /usr/bin/perl"
      "lib/perl5 ${L}/perl-base/. /usr/share/perl/5.36/. ${L}/perl/5.36/."
    ];
    remove = [
      "lib/perl5/DB_File.pm" "lib/perl5/auto/DB_File"
      "lib/perl5/GDBM_File.pm" "lib/perl5/auto/GDBM_File"
      "lib/perl5/NDBM_File.pm" "lib/perl5/auto/NDBM_File"
      "lib/perl5/ODBM_File.pm" "lib/perl5/auto/ODBM_File"
    ];
    wrap = { "bin/perl" = { PERL5LIB = "@out@/lib/perl5"; }; };
  };
  python3 = mk {
    pname = "python3"; version = "3.11.2";
    debs = [ "python3.11" "python3.11-minimal" "libpython3.11-minimal" "libpython3.11-stdlib" ];
    libs = [ zlib expat bzip2 libxcrypt libffi xz ncurses readline sqlite libuuid openssl ];
    copy = [ "bin /usr/bin/python3.11" "lib /usr/lib/python3.11" ];
    links = { "bin/python3" = "python3.11"; "bin/python" = "python3.11"; };
    remove = [
      "lib/python3.11/test" "lib/python3.11/idlelib" "lib/python3.11/tkinter"
      "lib/python3.11/turtledemo" "lib/python3.11/ensurepip" "lib/python3.11/lib2to3/tests"
      "lib/python3.11/config-3.11-${arch.triplet}" "lib/python3.11/site-packages"
      "lib/python3.11/dist-packages" "lib/python3.11/lib-dynload/_dbm.*"
      "lib/python3.11/lib-dynload/nis.*" "lib/python3.11/lib-dynload/_tkinter.*"
      "lib/python3.11/sitecustomize.py" "lib/python3.11/EXTERNALLY-MANAGED"
    ];
  };
  six = mk {
    pname = "python3.11-six"; version = "1.16.0";
    debs = [ "python3-six" ];
    copy = [ "lib/python3.11/site-packages /usr/lib/python3/dist-packages/six.py" ];
    links = { "nix-support/python" = "${python3}"; };
  };

in
{
  inherit glibc libxcrypt zlib openssl ncurses readline pcre2 libunistring libidn2 libpsl
    nghttp2 gmp nettle libtasn1 libffi p11-kit gnutls rtmpdump libssh2 keyutils krb5
    cyrus_sasl openldap brotli lz4 libselinux attr acl oniguruma libuuid expat libmd
    libbsd libedit mpfr libsigsegv;

  inherit bashInteractive coreutils moreutils nano less curl jq git cacert iana-etc
    hello gnugrep gnused gawk findutils diffutils gzip xz bzip2 zstd gnutar file which
    tree sqlite openssh wget perl python3;

  # Nested sets, reached with dotted names such as gitAndTools.git.
  gitAndTools = { inherit git; };
  python3Packages = { inherit six; python = python3; };
}
