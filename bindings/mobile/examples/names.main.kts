// Claim, read and release a name from Kotlin (the README's example; run
// by bindings/mobile/test.sh). NAMEBUMP_SERVER is "host:port",
// NAMEBUMP_SERVER_PK the key `keyway namebump serve` prints.
import keyway.Keypair
import keyway.KeywayException
import keyway.NamebumpClient
import kotlinx.coroutines.runBlocking

val server = System.getenv("NAMEBUMP_SERVER") ?: "127.0.0.1:5300"
val serverPk = System.getenv("NAMEBUMP_SERVER_PK") ?: error("set NAMEBUMP_SERVER_PK")

runBlocking {
    val me = Keypair.generate() // keep me.privateHex() in the platform keystore
    NamebumpClient(server, serverPk).use { names ->
        try {
            names.put("my-phone", "hello".toByteArray(), me)
            println("my-phone = ${names.get("my-phone")?.decodeToString()}")
            names.delete("my-phone", me)
            println("after delete: ${names.get("my-phone")}")
        } catch (e: KeywayException.NotOwner) {
            println("my-phone belongs to someone else")
        }
    }
}
