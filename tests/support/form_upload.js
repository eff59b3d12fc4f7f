// Drives Debian's Chromium (through playwright-core) through a form upload: a page on the
// application's origin holds an HTML form built from presigned POST fields, a person picks a
// file and submits; the proxy stores it and redirects back to the application.
//
// Usage: node form_upload.js APP_ORIGIN FILE_NAME FILE_BYTES (sdk PROXY_ORIGIN BUCKET KEY_ID SECRET | fields JSON)
// With `sdk`, the fields come from @aws-sdk/s3-presigned-post's createPresignedPost.
// Prints JSON: the URL the browser landed on, and the form's action.
const { launch } = require("./chromium.js");

async function sdkPost(proxyOrigin, bucket, keyId, secret, appOrigin) {
  const { S3Client } = require("@aws-sdk/client-s3");
  const { createPresignedPost } = require("@aws-sdk/s3-presigned-post");
  const client = new S3Client({
    endpoint: proxyOrigin,
    forcePathStyle: true,
    region: "us-east-1",
    credentials: { accessKeyId: keyId, secretAccessKey: secret },
  });
  return createPresignedPost(client, {
    Bucket: bucket,
    Key: "uploads/${filename}",
    Conditions: [["starts-with", "$key", "uploads/"], ["content-length-range", 1, 1048576]],
    Fields: { success_action_redirect: `${appOrigin}/done` },
    Expires: 600,
  });
}

(async () => {
  const [appOrigin, fileName, fileBytes, mode, ...rest] = process.argv.slice(2);
  const post = mode === "sdk"
    ? await sdkPost(rest[0], rest[1], rest[2], rest[3], appOrigin)
    : JSON.parse(rest[0]);
  const browser = await launch();
  const page = await browser.newPage();
  await page.goto(`${appOrigin}/`);
  await page.evaluate((post) => {
    const form = document.createElement("form");
    form.method = "POST";
    form.action = post.url;
    form.enctype = "multipart/form-data";
    for (const [name, value] of Object.entries(post.fields)) {
      const input = document.createElement("input");
      input.type = "hidden";
      input.name = name;
      input.value = value;
      form.appendChild(input);
    }
    const file = document.createElement("input");
    file.type = "file";
    file.name = "file";
    form.appendChild(file);
    const submit = document.createElement("input");
    submit.type = "submit";
    form.appendChild(submit);
    document.body.appendChild(form);
  }, post);
  await page.setInputFiles("input[type=file]", {
    name: fileName,
    mimeType: "image/gif",
    buffer: Buffer.from(fileBytes, "base64"),
  });
  await Promise.all([page.waitForURL(`${appOrigin}/done**`, { timeout: 15000 }), page.click("input[type=submit]")]);
  console.log(JSON.stringify({ landed: page.url(), action: post.url }));
  await browser.close();
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
