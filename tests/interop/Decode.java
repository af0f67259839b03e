// Decodes every file of a manifest (TSV: id, kind zlib|gzip, path, length, sha256) with
// java.util.zip (Inflater for ZLIB, GZIPInputStream for GZIP) and prints one TSV line per file:
// decoder, id, length, sha256 -- or decoder, id, ERROR, message. Run by tests/it/interop.rs as
// a single-file source program (`java Decode.java MANIFEST`).
import java.io.ByteArrayInputStream;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.HexFormat;
import java.util.zip.GZIPInputStream;
import java.util.zip.InflaterInputStream;

public class Decode {
    public static void main(String[] args) throws Exception {
        StringBuilder out = new StringBuilder();
        for (String line : Files.readAllLines(Path.of(args[0]))) {
            if (line.isEmpty()) continue;
            String[] f = line.split("\t");
            byte[] data = Files.readAllBytes(Path.of(f[2]));
            try {
                InputStream in = f[1].equals("zlib")
                        ? new InflaterInputStream(new ByteArrayInputStream(data))
                        : new GZIPInputStream(new ByteArrayInputStream(data));
                MessageDigest sha = MessageDigest.getInstance("SHA-256");
                byte[] buf = new byte[1 << 16];
                long len = 0;
                for (int n; (n = in.read(buf)) > 0; len += n) sha.update(buf, 0, n);
                out.append("java-util-zip\t").append(f[0]).append('\t').append(len).append('\t')
                        .append(HexFormat.of().formatHex(sha.digest())).append('\n');
            } catch (Exception e) {
                out.append("java-util-zip\t").append(f[0]).append("\tERROR\t")
                        .append(String.valueOf(e).replaceAll("\\s+", " ")).append('\n');
            }
        }
        System.out.print(out);
    }
}
