complete -c gc_partition -l partition -d 'Partition to collect' -r
complete -c gc_partition -l live-snapshots -d 'The complete live set: one snapshot id per line and the `# end` trailer; `-` = stdin' -r
complete -c gc_partition -l deleting-snapshots -d 'The partition\'s snapshots being deleted (and deleted ones whose manifests may remain), in the live set\'s format, taken within 5 min of it. Turns on the cross-check of the snapshots folder, the per-snapshot accounting and the reclaim of their manifests' -r -F
complete -c gc_partition -l cutoff -d 'Chunks modified at or after this are kept: RFC 3339, or a duration before now (36h, 7d). Must be at least 24 h before the live set\'s taken_at. Not with --apply-plan, which takes the plan\'s' -r
complete -c gc_partition -l store -d 'Store URL: file:///abs/dir, gs://, s3://, az:// or memory://' -r
complete -c gc_partition -l meta-bucket -d 'Bucket holding the manifests and the legacy chunk location' -r
complete -c gc_partition -l location -d 'Another location to list, BUCKET[/PREFIX]; its prefix must name the partition' -r
complete -c gc_partition -l apply-plan -d 'Delete exactly what a reviewed dry-run plan lists (plain or .zst), after checking it against this run\'s live set, manifests and store' -r -F
complete -c gc_partition -l max-plan-age -d 'Refuse an --apply-plan plan older than this (at most 23h: shorter than the grace)' -r
complete -c gc_partition -l explain -d 'Explain why this chunk (64 hex digits) is kept or deleted; repeatable; read-only' -r
complete -c gc_partition -l plan-out -d 'Write the plan (JSON Lines) here' -r -F
complete -c gc_partition -l work-dir -d 'Directory of the run\'s temporary files (the plan\'s spool, verify\'s spill); default: the system temporary directory' -r -F
complete -c gc_partition -l report-out -d 'Write the report (JSON) here' -r -F
complete -c gc_partition -l output -d 'Summary format on stdout' -r -f -a "human\t''
json\t''"
complete -c gc_partition -l max-delete-fraction -d 'Refuse to execute a plan deleting more than this share of the chunks older than the cutoff' -r
complete -c gc_partition -l bloom-fpr -d 'Bloom filter false-positive rate (a false positive keeps garbage one run longer)' -r
complete -c gc_partition -l bloom-seed -d 'Pin the bloom filter\'s seed (default: a fresh one each run)' -r
complete -c gc_partition -l list-concurrency -d 'Listing requests in flight at once' -r
complete -c gc_partition -l delete-concurrency -d 'Deletes in flight at once' -r
complete -c gc_partition -l max-delete-rate -d 'Deletes per second at most, whatever the store allows (default: unlimited)' -r
complete -c gc_partition -l manifest-concurrency -d 'Manifest fetches in flight at once' -r
complete -c gc_partition -l request-timeout -d 'Timeout of one request to a remote store (gs://, s3://)' -r
complete -c gc_partition -l max-retries -d 'Retries, with backoff, of a request that failed transiently (any store)' -r
complete -c gc_partition -l progress-interval -d 'Progress: bars on a terminal, otherwise a `progress` log event this often; 0 = off' -r
complete -c gc_partition -l metrics-out -d 'Write the run\'s outcome here in the Prometheus text format (node_exporter textfile)' -r -F
complete -c gc_partition -l log-format -d 'Log format on stderr (RUST_LOG sets the level)' -r -f -a "text\t''
json\t''"
complete -c gc_partition -l verify -d 'Check the plan exactly before deleting, and that no referenced chunk went missing'
complete -c gc_partition -l execute -d 'Delete the planned chunks (default: dry run)'
complete -c gc_partition -s h -l help -d 'Print help'
complete -c gc_partition -s V -l version -d 'Print version'
