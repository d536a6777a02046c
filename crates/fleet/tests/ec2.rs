//! The EC2 Query API client against moto's EC2 server on loopback: launch
//! with tags and user-data, count by tag across pages, tag, terminate.

use nommer_fleet::ec2::{Ec2Client, Ec2Error, LaunchSpec};
use nommer_testkit::moto::MotoServer;
use std::collections::BTreeMap;

async fn client() -> Ec2Client {
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    Ec2Client::new("us-east-1", Some(&MotoServer::shared().endpoint)).await
}

fn spec(cluster: &str) -> LaunchSpec {
    LaunchSpec {
        image_id: "ami-12c6146b".into(),
        instance_type: "t3.micro".into(),
        terminate_on_shutdown: true,
        user_data: "#cloud-config\nruncmd: [echo hi]\n".into(),
        tags: BTreeMap::from([
            ("nommer:cluster".to_string(), cluster.to_string()),
            ("Name".to_string(), "nommerd".to_string()),
        ]),
        ..Default::default()
    }
}

fn by_cluster(cluster: &str) -> Vec<(&'static str, Vec<String>)> {
    vec![
        ("tag:nommer:cluster", vec![cluster.to_string()]),
        (
            "instance-state-name",
            vec!["pending".to_string(), "running".to_string()],
        ),
    ]
}

#[tokio::test]
async fn launch_count_by_tag_across_pages_tag_and_terminate() {
    let ec2 = client().await;
    let ids = ec2.run_instances(&spec("alpha"), 3).await.unwrap();
    assert_eq!(ids.len(), 3);
    // Another cluster's instances of the same AMI are not ours to count.
    ec2.run_instances(&spec("beta"), 2).await.unwrap();

    let ours = ec2.describe_instances(&by_cluster("alpha")).await.unwrap();
    assert_eq!(ours.len(), 3);
    assert!(ours.iter().all(|i| i.tags["Name"] == "nommerd"));
    // Launched with IMDSv2 only, hop limit 1, as EC2 reports back.
    for instance in &ours {
        let metadata = instance.metadata.as_ref().expect("metadataOptions");
        assert_eq!(
            metadata.http_tokens.as_deref(),
            Some("required"),
            "{instance:?}"
        );
        assert_eq!(metadata.hop_limit, Some(1), "{instance:?}");
    }

    // More than a page (50): the client follows NextToken.
    let many = ec2.run_instances(&spec("gamma"), 60).await.unwrap();
    assert_eq!(many.len(), 60);
    assert_eq!(
        ec2.describe_instances(&by_cluster("gamma"))
            .await
            .unwrap()
            .len(),
        60
    );

    ec2.create_tags(
        &ids[..1],
        &BTreeMap::from([("nommer:state".to_string(), "draining".to_string())]),
    )
    .await
    .unwrap();
    let tagged = ec2
        .describe_instances(&[("tag:nommer:state", vec!["draining".to_string()])])
        .await
        .unwrap();
    assert_eq!(tagged.len(), 1);
    assert_eq!(tagged[0].id, ids[0]);

    ec2.terminate_instances(&ids[..2]).await.unwrap();
    let left = ec2.describe_instances(&by_cluster("alpha")).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, ids[2]);
}

#[tokio::test]
async fn api_errors_carry_their_code() {
    let ec2 = client().await;
    let err = ec2
        .terminate_instances(&["i-doesnotexist0000".to_string()])
        .await
        .unwrap_err();
    match err {
        Ec2Error::Api { code, .. } => assert!(code.contains("InvalidInstanceID"), "{code}"),
        other => panic!("{other}"),
    }
}
