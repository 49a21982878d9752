// Drayer: a stream made with the CLI (`keyway drayer new/set/del`),
// served by `keyway drayer serve` on loopback, mirrored from Kotlin; and a
// stream the app owns.

import keyway.DrayerStream
import keyway.KeywayException
import java.io.File

suspend fun testDrayerMirror() {
    val dir = File(scratch, "drayer-${System.nanoTime()}").apply { mkdirs() }
    val owned = File(dir, "owned.drayer").path
    val publicKey = keyway("drayer", "new", owned).trim()
    val values = mapOf("alpha" to "one ${System.nanoTime()}", "beta" to "two")
    for ((k, v) in values) keyway("drayer", "set", owned, k, v, "--raw")
    keyway("drayer", "set", owned, "gone", "soon", "--raw")
    keyway("drayer", "del", owned, "gone")

    Proc(keywayBin, "drayer", "serve", owned, "--listen", "127.0.0.1:0").use { server ->
        val address = server.value("listening=", 60)
        DrayerStream.mirror(File(dir, "mirror.drayer").path, publicKey).use { mirror ->
            check(mirror.publicKeyB64() == publicKey) { "mirror key ${mirror.publicKeyB64()} != $publicKey" }
            check(mirror.keys().isEmpty()) { "a new mirror holds ${mirror.keys()}" }
            mirror.sync("http://$address/")
            check(mirror.keys().sorted() == values.keys.sorted()) { "mirrored keys ${mirror.keys()}" }
            for ((k, v) in values) {
                check(mirror.get(k)?.decodeToString() == v) { "mirrored $k = ${mirror.get(k)?.decodeToString()}" }
            }
            check(mirror.get("gone") == null) { "the deleted key came back" }
            expectThrows<KeywayException.NotOwner>("writing a mirror") {
                mirror.set("alpha", byteArrayOf(1))
            }

            // A later write reaches the mirror on the next sync.
            keyway("drayer", "set", owned, "gamma", "three", "--raw")
            mirror.sync("http://$address/")
            check(mirror.get("gamma")?.decodeToString() == "three") { "the second sync missed gamma" }
        }
        expectThrows<KeywayException>("syncing from a closed port") {
            DrayerStream.mirror(File(dir, "other.drayer").path, publicKey).use { it.sync("http://127.0.0.1:1/") }
        }
    }
}

fun testDrayerOwned() {
    val path = File(scratch, "app-${System.nanoTime()}.drayer").path
    val key = DrayerStream.create(path).use { stream ->
        stream.set("a", "1".toByteArray())
        stream.set("b", "2".toByteArray())
        stream.set("a", "3".toByteArray())
        stream.delete("b")
        stream.delete("never-set")
        check(stream.keys() == listOf("a")) { "keys after writes: ${stream.keys()}" }
        stream.publicKeyB64()
    }
    DrayerStream.open(path).use { stream ->
        check(stream.publicKeyB64() == key) { "reopened with another key" }
        check(stream.get("a")?.decodeToString() == "3") { "a after reopening" }
        check(stream.get("b") == null) { "b after reopening" }
    }
    expectThrows<KeywayException.InvalidInput>("creating over an existing file") { DrayerStream.create(path) }
    expectThrows<KeywayException.InvalidInput>("opening a missing file") { DrayerStream.open("$path.missing") }
    expectThrows<KeywayException.InvalidInput>("a key that is not base64") {
        DrayerStream.mirror("$path.m", "not a key")
    }
}

/** A value changed in the file behind the library's back fails its signed hash. */
fun testDrayerTampered() {
    val path = File(scratch, "tampered-${System.nanoTime()}.drayer").path
    DrayerStream.create(path).use { it.set("k", "signed value".toByteArray()) }
    val sql = "UPDATE record SET value = X'00' WHERE key = 'k' AND type = 'obj'"
    val python = ProcessBuilder(
        "python3", "-c",
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); n = c.execute(sys.argv[2]).rowcount; c.commit(); sys.exit(0 if n == 1 else 1)",
        path, sql,
    ).redirectErrorStream(true).start()
    check(python.waitFor(30, java.util.concurrent.TimeUnit.SECONDS) && python.exitValue() == 0) {
        "could not tamper with $path: ${python.inputStream.bufferedReader().readText()}"
    }
    DrayerStream.open(path).use { stream ->
        expectThrows<KeywayException.VerificationFailed>("reading a tampered value") { stream.get("k") }
    }
}
