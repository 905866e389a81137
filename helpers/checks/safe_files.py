"""Leer y copiar archivos que escribió otro (una entrega): sin seguir enlaces, solo archivos normales, con topes.

Cada archivo se abre con ``O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC`` y ``fstat`` debe decir
«archivo normal»: un enlace simbólico no se sigue (``O_NOFOLLOW``), una tubería (FIFO) no bloquea
(``O_NONBLOCK``) y se rechaza, igual que un dispositivo o un socket. Las carpetas se recorren abriendo
cada entrada relativa a la carpeta ya abierta (``dir_fd``), sin seguir enlaces en ningún nivel. Cada
archivo tiene un tope de tamaño; una copia, además, topes de bytes, de archivos y de profundidad.

Lo que no cumple lanza ``Refused`` con el motivo en español, listo para la columna ``motivo``.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import os
import stat
from dataclasses import dataclass
from pathlib import Path

READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
DIR_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC
BLOCK = 1 << 20
ENTRY_BYTES = 4096  # lo que ocupa en disco una carpeta vacía (o el inodo de un archivo): 20.000 son 80 MiB


class Refused(ValueError):
    """Un archivo o una carpeta que no se lee: el mensaje (en español) dice qué es y por qué."""


class Missing(Refused):
    """No existe (no es un intento de engaño: la ejecución no llegó a escribirlo)."""


def kind(mode: int) -> str:
    """Qué es una entrada del sistema de archivos, en palabras: «un enlace simbólico», «una tubería (FIFO)»…"""
    for test, name in ((stat.S_ISREG, "un archivo normal"), (stat.S_ISDIR, "una carpeta"),
                       (stat.S_ISLNK, "un enlace simbólico"), (stat.S_ISFIFO, "una tubería (FIFO)"),
                       (stat.S_ISSOCK, "un socket"), (stat.S_ISCHR, "un dispositivo"),
                       (stat.S_ISBLK, "un dispositivo")):
        if test(mode):
            return name
    return "algo que no es un archivo"


def size_text(n: int) -> str:
    """1,5 GiB, 20 MiB, 512 bytes: para los motivos."""
    if n >= 1 << 30:
        return f"{n / (1 << 30):.3g} GiB".replace(".", ",")
    if n >= 1 << 20:
        return f"{n / (1 << 20):.3g} MiB".replace(".", ",")
    return f"{n} bytes"


def open_regular(name, *, dir_fd: int | None = None, cap: int, label: str | None = None) -> tuple[int, int]:
    """(descriptor, tamaño) de ``name`` si es un archivo normal de hasta ``cap`` bytes; si no, ``Refused``.

    ``name`` es relativo a ``dir_fd`` si se da. Nunca sigue un enlace en el último componente ni se
    queda esperando en una tubería.
    """
    label = label or str(name)
    try:
        fd = os.open(name, READ_FLAGS, dir_fd=dir_fd)
    except OSError as error:
        raise _refusal(label, error, name, dir_fd) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Refused(f"{label} es {kind(info.st_mode)}, no un archivo normal")
        if info.st_size > cap:
            raise Refused(f"{label} pesa {size_text(info.st_size)}, más del máximo ({size_text(cap)})")
    except BaseException:
        os.close(fd)
        raise
    return fd, info.st_size


def _refusal(label: str, error: OSError, name, dir_fd, wanted: str = "un archivo normal") -> Refused:
    if error.errno == errno.ENOENT:
        return Missing(f"no encuentro {label}")
    try:  # qué es en realidad, sin seguirlo (ELOOP: un enlace; ENXIO: un socket; ENOTDIR: no es carpeta...)
        what = kind(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return Refused(f"no puedo abrir {label} ({error.strerror or error})")
    return Refused(f"{label} es {what}, no {wanted}")


def read_regular(name, *, dir_fd: int | None = None, cap: int, label: str | None = None) -> bytes:
    """Los bytes de un archivo normal de hasta ``cap`` bytes (ver ``open_regular``)."""
    fd, _ = open_regular(name, dir_fd=dir_fd, cap=cap, label=label)
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(cap + 1)
    if len(data) > cap:  # creció mientras se leía
        raise Refused(f"{label or name} pesa más del máximo ({size_text(cap)})")
    return data


def read_head(path, n: int, *, cap: int) -> tuple[bytes, int]:
    """(los primeros ``n`` bytes, tamaño total) de un archivo normal de hasta ``cap`` bytes."""
    fd, size = open_regular(path, cap=cap)
    with os.fdopen(fd, "rb") as handle:
        return handle.read(n), size


def sha256_regular(path, *, cap: int) -> str:
    """SHA-256 de un archivo normal de hasta ``cap`` bytes."""
    fd, _ = open_regular(path, cap=cap)
    digest = hashlib.sha256()
    with os.fdopen(fd, "rb") as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


# --- copiar una carpeta --------------------------------------------------------------------------------

@dataclass
class Budget:
    """Topes de una copia: por archivo, en total, número de archivos y profundidad de carpetas."""

    file_bytes: int
    total_bytes: int
    files: int = 4096
    depth: int = 12
    entry_bytes: int = ENTRY_BYTES
    used_bytes: int = 0
    used_files: int = 0

    def take(self, size: int, label: str) -> None:
        """Cobra una entrada (archivo o carpeta): ``entry_bytes`` más ``size``, su tamaño aparente (``st_size``).

        Un archivo disperso paga lo que dice medir, no los bloques que ocupa: la copia sí los escribe.
        """
        self.used_files += 1
        self.used_bytes += self.entry_bytes + size
        if self.used_files > self.files:
            raise Refused(f"hay más de {self.files} archivos (en {label})")
        if self.used_bytes > self.total_bytes:
            raise Refused(f"lo entregado pasa de {size_text(self.total_bytes)} (en {label})")


def open_folder(name, *, dir_fd: int | None = None, label: str | None = None) -> int:
    """Descriptor de la carpeta ``name`` (relativa a ``dir_fd``), sin seguir un enlace; si no, ``Refused``."""
    try:
        return os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    except OSError as error:
        raise _refusal(label or str(name), error, name, dir_fd, "una carpeta") from None


def copy_tree(dir_fd: int, target: Path, budget: Budget, label: str, depth: int = 0) -> dict[str, str]:
    """Copia la carpeta abierta en ``dir_fd`` a ``target`` (nueva); {ruta relativa: SHA-256} de lo copiado.

    Solo carpetas y archivos normales; cualquier otra cosa (enlace, FIFO, dispositivo, socket) o un
    tope superado lanza ``Refused`` con la ruta (``label``/...) y el motivo. Los bytes se leen una vez:
    el hash es el de lo que se copió.
    """
    if depth > budget.depth:
        raise Refused(f"{label} está a más de {budget.depth} carpetas de profundidad")
    target.mkdir(mode=0o700)
    digests: dict[str, str] = {}
    names = []
    with os.scandir(dir_fd) as entries:  # sin listar de una vez millones de nombres
        for entry in entries:
            names.append(entry.name)
            if len(names) > budget.files:
                raise Refused(f"{label} tiene más de {budget.files} entradas")
    for name in sorted(names):
        where = f"{label}/{name}"
        try:
            mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
        except OSError as error:
            raise Refused(f"no puedo leer {where} ({error.strerror or error})") from None
        if stat.S_ISDIR(mode):
            budget.take(0, where)
            child = open_folder(name, dir_fd=dir_fd, label=where)
            try:
                inner = copy_tree(child, target / name, budget, where, depth + 1)
            finally:
                os.close(child)
            digests.update({f"{name}/{rel}": digest for rel, digest in inner.items()})
            continue
        fd, size = open_regular(name, dir_fd=dir_fd, cap=budget.file_bytes, label=where)
        budget.take(size, where)
        digests[name] = _copy_fd(fd, target / name, budget.file_bytes, where)
    return digests


def _copy_fd(fd: int, target: Path, cap: int, label: str) -> str:
    digest, written = hashlib.sha256(), 0
    with os.fdopen(fd, "rb") as source, open(target, "xb") as sink:
        while block := source.read(BLOCK):
            written += len(block)
            if written > cap:
                raise Refused(f"{label} pesa más del máximo ({size_text(cap)})")
            digest.update(block)
            sink.write(block)
    return digest.hexdigest()


# --- borrar lo que dejó otro -----------------------------------------------------------------------------

def remove_tree(path) -> None:
    """Borra ``path`` (una carpeta que escribió una entrega, o un archivo) sin recursión y sin seguir enlaces.

    ``shutil.rmtree`` recurre una vez por nivel (1.200 carpetas de hondo: ``RecursionError``) y tiene a la
    vez una carpeta abierta por nivel. Aquí cada subcarpeta se mueve a la raíz (un ``rename`` dentro del
    mismo disco) antes de vaciarla: nunca hay más de dos carpetas abiertas y la pila es una lista. Un
    enlace se borra como enlace; una carpeta sin permisos se abre tras darle permiso. ``OSError`` si algo
    quedó (lo que sí se pudo borrar, se borró).
    """
    path = Path(path)
    try:
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            os.unlink(path)
            return
    except FileNotFoundError:
        return
    names, failed = (f".borrando-{os.urandom(6).hex()}-{n}" for n in itertools.count()), []
    root_fd = _open_own_dir(path, None)
    try:
        pending = [entry for entry in _empty_into(root_fd, root_fd, None, failed)]
        while pending:
            name = pending.pop()
            try:
                fd = _open_own_dir(name, root_fd)
            except OSError as error:
                failed.append(error)
                continue
            try:
                pending.extend(_empty_into(fd, root_fd, names, failed))
            finally:
                os.close(fd)
            try:
                os.rmdir(name, dir_fd=root_fd)
            except OSError as error:
                failed.append(error)
    finally:
        os.close(root_fd)
    try:
        os.rmdir(path)
    except OSError as error:
        raise OSError(f"no pude borrar {path} entera ({len(failed) + 1} fallos; el primero: "
                      f"{(failed or [error])[0]})") from None


def _open_own_dir(name, dir_fd: int | None) -> int:
    """Abre una carpeta (sin seguir enlaces) y se asegura de poder vaciarla, aunque la entrega le quitara permisos."""
    try:
        fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    except PermissionError:
        os.chmod(name, 0o700, dir_fd=dir_fd)  # es una carpeta: O_NOFOLLOW no falló por un enlace
        fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    with _suppressed():
        os.fchmod(fd, 0o700)
    return fd


def _empty_into(fd: int, root_fd: int, rename, failed: list):
    """Borra los archivos de la carpeta ``fd``; da el nombre en la raíz de cada subcarpeta (movida allí con un
    nombre de ``rename`` si no es la raíz)."""
    with os.scandir(fd) as entries:
        found = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries]
    for name, is_dir in found:
        try:
            if not is_dir:
                os.unlink(name, dir_fd=fd)
            elif rename is None:
                yield name
            else:
                new = next(rename)
                with _suppressed():
                    os.chmod(name, 0o700, dir_fd=fd)  # mover una carpeta cambia su «..»: necesita permiso
                os.rename(name, new, src_dir_fd=fd, dst_dir_fd=root_fd)
                yield new
        except OSError as error:
            failed.append(error)


def _suppressed():
    import contextlib

    return contextlib.suppress(OSError)
