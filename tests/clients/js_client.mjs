// One S3 call with the AWS SDK for JavaScript v3, as a user of the proxy makes it (the proxy as
// endpoint, path style), printed as JSON. Run by matrix.py.
//
// Usage: node js_client.mjs '{"endpoint", "key", "secret", "bucket", "op", "object",
//                             "prefix", "range", "path"}'
// op: buckets | list | get | put | stream (a body of unknown length) | upload (lib-storage multipart)
//     | presign | delete
import { createReadStream, readFileSync } from "node:fs";
import { Readable } from "node:stream";
import { createRequire } from "node:module";

// The SDK is installed by scripts/clients into S3SP_CLIENTS (.clients, git-ignored).
const require = createRequire(process.env.S3SP_CLIENTS + "/package.json");
const {
  S3Client,
  ListBucketsCommand,
  ListObjectsV2Command,
  GetObjectCommand,
  PutObjectCommand,
  DeleteObjectCommand,
} = require("@aws-sdk/client-s3");
const { Upload } = require("@aws-sdk/lib-storage");
const { getSignedUrl } = require("@aws-sdk/s3-request-presigner");

const args = JSON.parse(process.argv[2]);
const s3 = new S3Client({
  endpoint: args.endpoint,
  region: "us-east-1",
  forcePathStyle: true,
  credentials: { accessKeyId: args.key, secretAccessKey: args.secret },
});
const where = { Bucket: args.bucket, Key: args.object };

async function main() {
  switch (args.op) {
    case "buckets": {
      const listed = await s3.send(new ListBucketsCommand({}));
      return { names: (listed.Buckets ?? []).map((b) => b.Name) };
    }
    case "list": {
      const keys = [];
      let ContinuationToken;
      do {
        const page = await s3.send(
          new ListObjectsV2Command({ Bucket: args.bucket, Prefix: args.prefix, ContinuationToken }),
        );
        for (const item of page.Contents ?? []) keys.push(item.Key);
        ContinuationToken = page.NextContinuationToken;
      } while (ContinuationToken);
      return { keys };
    }
    case "get": {
      const got = await s3.send(new GetObjectCommand({ ...where, Range: args.range }));
      const bytes = await got.Body.transformToByteArray();
      return { hex: Buffer.from(bytes).toString("hex") };
    }
    case "put":
      await s3.send(new PutObjectCommand({ ...where, Body: readFileSync(args.path) }));
      return {};
    case "stream": {
      // A stream: the SDK sends it aws-chunked with a checksum trailer and no Content-Length
      // (Transfer-Encoding: chunked). It needs the length for x-amz-decoded-content-length;
      // a stream of unknown length is lib-storage's Upload ("upload").
      const data = readFileSync(args.path);
      const chunks = [];
      for (let at = 0; at < data.length; at += 65536) chunks.push(data.subarray(at, at + 65536));
      await s3.send(
        new PutObjectCommand({ ...where, Body: Readable.from(chunks), ContentLength: data.length }),
      );
      return {};
    }
    case "upload": {
      const upload = new Upload({
        client: s3,
        params: { ...where, Body: createReadStream(args.path) },
        partSize: 16 * 1024 * 1024,
        queueSize: 2,
      });
      await upload.done();
      return {};
    }
    case "presign":
      return { url: await getSignedUrl(s3, new GetObjectCommand(where), { expiresIn: 300 }) };
    case "delete":
      await s3.send(new DeleteObjectCommand(where));
      return {};
    default:
      throw new Error(`unknown op ${args.op}`);
  }
}

main().then(
  (out) => console.log(JSON.stringify(out)),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
