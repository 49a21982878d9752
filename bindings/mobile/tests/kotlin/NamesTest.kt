// Names against a `keyway namebump serve` on loopback (a temp SQLite db,
// a port the server picks): put, get, update, delete, and the refusals
// (not owner, quota) as KeywayException subclasses.

import keyway.KeywayException
import keyway.Keypair
import keyway.NamebumpClient
import java.io.File

/** A namebump server of this test's, and a client of it. */
class NamebumpServer : AutoCloseable {
    private val dir = File(scratch, "namebump-${System.nanoTime()}").apply { mkdirs() }
    private val proc = Proc(
        keywayBin, "namebump", "serve",
        "--listen", "127.0.0.1:0",
        "--db", "sqlite:${File(dir, "names.db")}",
        "--key", File(dir, "server.key").path,
        // The quota test claims 20 names at once.
        "--rate-limit", "0",
    )
    val address: String = proc.value("listening=", 60)
    val publicKeyHex: String = proc.value("server_pk=", 60)

    fun client() = NamebumpClient(address, publicKeyHex)

    override fun close() = proc.close()
}

suspend fun testNames() {
    NamebumpServer().use { server ->
        val client = server.client()
        val owner = Keypair.generate()
        val name = "kotlin-${System.nanoTime()}"

        check(client.get(name) == null) { "$name exists before it was put" }
        client.put(name, "first".toByteArray(), owner)
        check(client.get(name)?.decodeToString() == "first") { "get after put" }
        client.put(name, "second".toByteArray(), owner)
        check(client.get(name)?.decodeToString() == "second") { "get after update" }

        val stranger = Keypair.generate()
        expectThrows<KeywayException.NotOwner>("another key updating $name") {
            client.put(name, "stolen".toByteArray(), stranger)
        }
        expectThrows<KeywayException.NotOwner>("another key deleting $name") {
            client.delete(name, stranger)
        }
        check(client.get(name)?.decodeToString() == "second") { "the refused calls changed $name" }

        client.delete(name, owner)
        check(client.get(name) == null) { "$name still there after delete" }
    }
}

suspend fun testQuota() {
    NamebumpServer().use { server ->
        val client = server.client()
        val owner = Keypair.generate()
        val before = client.usage(owner)
        check(before.namesUsed == 0u && before.nameLimit > 0u) { "a fresh server's usage: $before" }
        for (i in 0u until before.nameLimit) {
            client.put("quota-$i", byteArrayOf(i.toByte()), owner)
        }
        val full = client.usage(owner)
        check(full.namesUsed == full.nameLimit) { "usage after ${before.nameLimit} claims: $full" }
        expectThrows<KeywayException.RejectedAtQuota>("a claim past the quota") {
            client.put("quota-over", byteArrayOf(1), owner)
        }
        // Nothing was bumped to make room.
        check(client.get("quota-0")?.contentEquals(byteArrayOf(0)) == true) { "quota-0 was bumped" }
        check(client.get("quota-over") == null) { "the refused claim was stored" }
    }
}

fun testKeys() {
    val kp = Keypair.generate()
    check(kp.publicKeyHex().length == 66) { "public key hex: ${kp.publicKeyHex()}" }
    check(kp.privateHex().length == 64) { "private hex length" }
    val again = Keypair.fromPrivateHex(kp.privateHex())
    check(again.publicKeyHex() == kp.publicKeyHex()) { "fromPrivateHex(privateHex()) is another key" }
    check(Keypair.generate().publicKeyHex() != kp.publicKeyHex()) { "two generated keys are equal" }
    expectThrows<KeywayException.InvalidInput>("a private key that is not hex") {
        Keypair.fromPrivateHex("not hex")
    }
    expectThrows<KeywayException.InvalidInput>("a zero private key") {
        Keypair.fromPrivateHex("0".repeat(64))
    }
    expectThrows<KeywayException.InvalidInput>("a server key that is not a key") {
        NamebumpClient("127.0.0.1:1", "00")
    }
}
